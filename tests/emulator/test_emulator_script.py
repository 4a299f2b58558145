"""Emulator scripts are data: the bundled ones load, and a malformed one fails at load time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from realtime_emulator.script import SCRIPTS_DIR, Script, available_scripts, load_script


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
        "import sys, realtime_emulator.app, realtime_emulator.peer, realtime_emulator.__main__;"
        "sys.exit(1 if any(m == 'django' or m.startswith('django.') for m in sys.modules) else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_the_product_wheel_leaves_the_emulator_out():
    # The emulator is a test tool: the packages setuptools ships (pyproject's find rule) are the product's.
    import tomllib

    from setuptools import find_namespace_packages

    root = Path(__file__).resolve().parents[2]
    rule = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    shipped = set(find_namespace_packages(where=str(root), include=rule["include"]))
    assert "voice" in shipped and "realtime_site" in shipped
    assert not any(name.startswith("realtime_emulator") or "emulator" in name.split(".") for name in shipped)


def test_the_command_line_entry_point_shows_help():
    result = subprocess.run(
        [sys.executable, "-m", "realtime_emulator", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout and "--script" in result.stdout


def test_only_the_demo_and_interruption_scripts_let_speech_interrupt_the_model():
    # Existing scripts keep their exact event order: a continuous test tone cannot cut their replies.
    assert {name for name in available_scripts() if load_script(name).vad.barge_in} == {"demo", "interruption"}


def test_the_demo_script_has_several_turns_both_default_tools_and_a_reply_long_enough_to_interrupt():
    from voice.tools import tool_names

    script = load_script("demo")
    assert len(script.turns) >= 5
    tools = [turn.tool_call.name for turn in script.turns if turn.tool_call is not None]
    assert tools == ["current_time", "calculator"]
    assert set(tools) <= set(tool_names())
    words_per_turn = [len(turn.assistant.split()) for turn in script.turns]
    # At the default pace (110 ms a word) the longest reply lasts several seconds.
    assert max(words_per_turn) * script.timing.audio_ms_per_word >= 8000


def test_a_tool_reply_quotes_the_whole_output_or_fields_of_a_json_object():
    spec = load_script("demo").turns[1].tool_call
    assert spec is not None
    reply = spec.reply_with(json.dumps({"time": "09:41", "weekday": "Tuesday", "n": 3}))
    assert "09:41 in UTC, on a Tuesday" in reply
    assert spec.reply_with("not json") == spec.reply.replace("{output.time}", "not json").replace(
        "{output.weekday}", "not json")
    calc = Script.model_validate({"name": "x", "turns": [{"user": "a", "assistant": "b", "tool_call": {
        "name": "calculator", "reply": "It is {output.result}, from {output}."}}]}).turns[0].tool_call
    assert calc is not None
    output = json.dumps({"expression": "2*3", "result": 6})
    assert calc.reply_with(output) == f"It is 6, from {output}."
    assert calc.reply_with(json.dumps({"error": {"message": "no"}})).startswith('It is {"error"')
