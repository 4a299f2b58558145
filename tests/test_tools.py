"""The built-in tools operators may enable: current_time, calculator, session_history."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from pydantic import ValidationError

from voice import agent
from voice.agent import ToolContext, ToolError
from voice.tools import BUILTIN_TOOLS, get_tool, register, tool_names
from voice.tools.builtin import calculator, current_time, session_history

# --- registry -----------------------------------------------------------------------------------------


def test_the_registry_does_not_import_the_models() -> None:
    # The models import the registry (to validate and describe a config's tools); the implementations
    # import the models. Neither may import the other back, lazily or not.
    code = "import sys, voice.tools; print(sorted(m for m in sys.modules if m.startswith('voice.')))"
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                            cwd=settings.BASE_DIR).stdout
    assert "'voice.tools'" in loaded
    assert "voice.models" not in loaded and "voice.tools.builtin" not in loaded


def test_a_second_tool_of_the_same_name_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(agent.make_tool(current_time, timeout=5, uses_database=False))
    assert BUILTIN_TOOLS["current_time"].name == "current_time"


def test_tool_names_lists_the_builtin_tools_sorted() -> None:
    assert tool_names() == ["calculator", "current_time", "session_history"]
    assert set(BUILTIN_TOOLS) == set(tool_names())


def test_get_tool_returns_a_ga_definition() -> None:
    definition = get_tool("current_time").definition()

    assert definition["type"] == "function" and definition["name"] == "current_time"
    assert definition["description"] == "The current date and time in a time zone."
    assert definition["parameters"]["properties"]["timezone"]["default"] == "UTC"


def test_get_tool_with_an_unknown_name_lists_the_available_ones() -> None:
    with pytest.raises(KeyError, match="available: calculator, current_time, session_history"):
        get_tool("shell")


def test_session_history_takes_no_arguments_the_model_could_fill() -> None:
    assert get_tool("session_history").definition()["parameters"]["properties"] == {}
    with pytest.raises(ValidationError):
        get_tool("session_history").parse_arguments({"user_id": 1})


# --- current_time -------------------------------------------------------------------------------------


def test_current_time_in_a_named_zone() -> None:
    result = current_time("Asia/Tokyo")

    assert result["timezone"] == "Asia/Tokyo" and result["utc_offset"] == "+0900"
    parsed = datetime.fromisoformat(result["iso"])
    assert abs(parsed - datetime.now(UTC)) < timedelta(minutes=5)


def test_current_time_defaults_to_utc() -> None:
    assert current_time()["utc_offset"] == "+0000"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "not a zone"])
def test_current_time_with_an_unknown_zone_is_a_tool_error(zone: str) -> None:
    with pytest.raises(ToolError, match="Unknown time zone"):
        current_time(zone)


@pytest.mark.parametrize("arguments", [{"timezone": ""}, {"timezone": "x" * 65}, {"timezone": 3}, {"tz": "UTC"}])
def test_current_time_refuses_bad_arguments(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        get_tool("current_time").parse_arguments(arguments)


# --- calculator ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("7 % 4", 3),
        ("-2 ** 2", -4),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("sqrt(16) + abs(-3)", 7),
        ("round(2.6)", 3),
        ("10 / 4 * 2", 5),
        ("2 * pi", 6.283185307179586),
        ("0.1 + 0.2", 0.30000000000000004),
    ],
)
def test_calculator_evaluates_arithmetic(expression: str, result: float) -> None:
    assert calculator(expression) == {"expression": expression, "result": result}


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "Division by zero"),
        ("__import__('os').system('ls')", "Not allowed"),
        ("open('/etc/passwd')", "Not allowed"),
        ("(1).__class__", "Not allowed"),
        ("x + 1", "Not allowed"),
        ("'a' * 3", "Only numbers"),
        ("True + 1", "Only numbers"),
        ("[1, 2]", "Not allowed"),
        ("lambda: 1", "Not allowed"),
        ("2 ^ 3", r"use '\*\*'"),
        ("1 << 5", "not allowed"),
        ("2 ** 1000", "Exponents are limited"),
        ("(2 ** 99) ** 11", "too large"),
        ("10 ** 99 * 10 ** 99 * 10 ** 99 * 10 ** 99", "too large"),
        ("1e300 * 1e300", "not a finite number"),
        ("9 ** 9 ** 9", "Exponents are limited"),
        ("(10 ** 100) ** 100", "too large"),
        ("1e200 ** 2", "Cannot compute"),
        ("sqrt(-1)", "Cannot compute"),
        ("sqrt(1, 2)", "takes 1 argument"),
        ("1 +", "not a valid arithmetic expression"),
        ("(-8) ** 0.5", "not a real number"),
        ("-" * 150 + "1", "too long"),
    ],
)
def test_calculator_refuses_what_is_not_safe_arithmetic(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        calculator(expression)


def test_calculator_arguments_are_limited_in_length() -> None:
    tool = get_tool("calculator")

    with pytest.raises(ValidationError):
        tool.parse_arguments({"expression": "1+" * 150 + "1"})
    with pytest.raises(ValidationError):
        tool.parse_arguments({})
    assert tool.parse_arguments({"expression": "1+1"}) == {"expression": "1+1"}


# --- session_history ----------------------------------------------------------------------------------


def _session(user: User, started_at: datetime) -> Any:
    from voice.models import VoiceSession

    return VoiceSession.objects.create(user=user, started_at=started_at)


@pytest.mark.django_db
def test_session_history_counts_only_the_calling_users_sessions(owner: User, stranger: User) -> None:
    now = datetime.now(UTC)
    _session(owner, now - timedelta(days=3))
    previous = _session(owner, now - timedelta(days=1))
    current = _session(owner, now)
    _session(stranger, now - timedelta(hours=1))  # someone else's, more recent: must not show

    result = session_history(ToolContext(user_id=owner.pk, username=owner.username, session_id=str(current.pk)))

    assert result == {"session_count": 3, "last_session_started_at": previous.started_at.isoformat()}


@pytest.mark.django_db
def test_session_history_of_a_first_session_has_no_previous_one(owner: User) -> None:
    current = _session(owner, datetime.now(UTC))

    result = session_history(ToolContext(user_id=owner.pk, username=owner.username, session_id=str(current.pk)))

    assert result == {"session_count": 1, "last_session_started_at": None}


@pytest.mark.django_db
def test_session_history_with_an_unreadable_session_id_counts_every_session(owner: User) -> None:
    only = _session(owner, datetime.now(UTC))

    result = session_history(ToolContext(user_id=owner.pk, username=owner.username, session_id="not-a-uuid"))

    assert result == {"session_count": 1, "last_session_started_at": only.started_at.isoformat()}


@pytest.mark.django_db
def test_session_history_for_a_user_without_sessions(colleague: User) -> None:
    result = session_history(ToolContext(user_id=colleague.pk, session_id=str(uuid.uuid4())))

    assert result == {"session_count": 0, "last_session_started_at": None}


def test_session_history_needs_a_signed_in_user() -> None:
    with pytest.raises(ToolError, match="signed-in user"):
        session_history(ToolContext(user_id=None))
