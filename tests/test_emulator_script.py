"""Emulator scripts are data: the bundled ones load, and a malformed one fails at load time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from voice.emulator.script import SCRIPTS_DIR, Script, available_scripts, load_script


def test_the_bundled_scripts_load():
    assert {"default", "tool_call", "multi_turn"} <= set(available_scripts())
    for name in available_scripts():
        script = load_script(name)
        assert script.name == name
        assert script.turns


def test_the_default_script_is_one_plain_turn():
    script = load_script("default")
    assert len(script.turns) == 1
    assert script.turns[0].tool_call is None


def test_the_tool_script_calls_current_time_in_utc():
    tool_call = load_script("tool_call").turns[0].tool_call
    assert tool_call is not None
    assert tool_call.name == "current_time"
    assert tool_call.arguments == {"timezone": "UTC"}
    assert "{output}" in tool_call.reply


def test_a_script_loads_from_a_path(tmp_path: Path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", "turns": [{"user": "a", "assistant": "b"}]}))
    assert load_script(str(path)).turns[0].assistant == "b"


def test_an_unknown_script_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="default"):
        load_script("no_such_script")


@pytest.mark.parametrize(
    "data",
    [
        {"name": "x", "turns": []},
        {"name": "x", "turns": [{"user": "a", "assistant": "b", "typo": 1}]},
        {"name": "x", "turns": [{"user": "a", "assistant": "b", "tool_call": {"name": "t", "reply": "no output"}}]},
        {"name": "x", "turns": [{"user": "a", "assistant": "b", "transcription": "whenever"}]},
        {"name": "x", "vad": {"threshold": 2}, "turns": [{"user": "a", "assistant": "b"}]},
    ],
)
def test_malformed_scripts_are_refused(data: dict[str, object]):
    with pytest.raises(ValidationError):
        Script.model_validate(data)


def test_bundled_script_files_are_valid_json_objects():
    for path in SCRIPTS_DIR.glob("*.json"):
        assert isinstance(json.loads(path.read_text()), dict), path


def test_the_emulator_package_runs_without_django():
    # The emulator must stand alone: importing it must not import Django.
    code = (
        "import sys, voice.emulator.app, voice.emulator.peer, voice.emulator.__main__;"
        "sys.exit(1 if any(m == 'django' or m.startswith('django.') for m in sys.modules) else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_the_command_line_entry_point_shows_help():
    result = subprocess.run(
        [sys.executable, "-m", "voice.emulator", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout and "--script" in result.stdout
