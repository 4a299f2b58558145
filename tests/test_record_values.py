"""The values the Recorder stores are made storable and bounded where they enter (voice/record_values.py)."""

from __future__ import annotations

import json

from voice import record_values as values

FFFD = "\ufffd"


def test_lone_surrogates_and_nuls_become_the_replacement_character_in_strings_and_keys() -> None:
    frame = json.loads('{"type": "x", "a\\ud800": ["ok", "b\\udfffc", {"d": "e\\u0000f"}], "g": "\\ud83d\\ude00"}')
    clean = values.clean_json(frame)
    assert clean == {"type": "x", f"a{FFFD}": ["ok", f"b{FFFD}c", {"d": f"e{FFFD}f"}], "g": "\U0001f600"}
    json.dumps(clean, ensure_ascii=False).encode("utf-8")  # valid Unicode: encodes without error
    assert frame["a\ud800"][1] == "b\udfffc"  # the caller's frame is not changed


def test_over_deep_nesting_huge_integers_and_non_finite_numbers_are_kept_as_markers() -> None:
    deep: list = []
    cursor = deep
    for _ in range(500):
        cursor.append([])
        cursor = cursor[0]
    clean = values.clean_json({"deep": deep, "big": 10**400, "nan": float("nan"), "when": object()})
    json.dumps(clean)  # no RecursionError, no ValueError
    text = json.dumps(clean["deep"])
    assert "nested deeper than" in text
    assert clean["big"] == "<integer of 1329 bits>" and clean["nan"] == "nan"
    assert isinstance(clean["when"], str)


def test_an_over_long_id_stays_unique_and_fits_its_column() -> None:
    first, second = "a" * 300 + "1", "a" * 300 + "2"
    assert len(values.bounded_id(first)) == 128
    assert values.bounded_id(first) != values.bounded_id(second)
    assert values.bounded_id(first) == values.bounded_id(first)
    assert values.bounded_id("item_1") == "item_1"
    assert values.bounded_id(None) == "" and values.bounded_id({"x": 1}) == ""


def test_milliseconds_and_counts_must_be_non_negative_integers_within_range() -> None:
    assert values.bounded_int(1400) == 1400 and values.bounded_int(1400.0) == 1400
    for bad in (-1, "12", None, True, 1.5, float("inf"), 2**31, [1]):
        assert values.bounded_int(bad) is None, bad


def test_secrets_are_redacted_wherever_they_are_and_nothing_else_changes() -> None:
    frame = {"type": "ag2.init", "config": {"value": "opaque-azure-secret", "expires_at": 1,
                                            "session": {"instructions": "say ek_live1234567 please"}},
             "headers": {"Authorization": "Bearer x"}, "note": "key sk-proj-abcdefgh1234 leaked", "n": 3}
    redacted = values.redact_secrets(frame, api_key="sk-proj-abcdefgh1234")
    text = json.dumps(redacted)
    assert "opaque-azure-secret" not in text and "ek_live1234567" not in text and "sk-proj" not in text
    assert "Bearer" not in text
    assert redacted["config"]["expires_at"] == 1 and redacted["n"] == 3
    plain = {"type": "response.done", "response": {"usage": {"total_tokens": 5}}, "text": "task-list desk"}
    assert values.redact_secrets(plain, api_key="sk-x") is plain  # walked, not copied


def test_a_refused_row_renders_as_bounded_ascii() -> None:
    text = values.storable_repr({"text": "a\ud800\x00" + "x" * 50_000}, 1000)
    assert text.isascii() and "\x00" not in text and len(text) < 1100


def _usage(**overrides: object) -> dict:
    usage = {"total_tokens": 1300, "input_tokens": 1000, "output_tokens": 300,
             "input_token_details": {"text_tokens": 400, "audio_tokens": 600, "cached_tokens": 200,
                                     "cached_tokens_details": {"text_tokens": 200, "audio_tokens": 0}},
             "output_token_details": {"text_tokens": 100, "audio_tokens": 200}}
    usage.update(overrides)
    return usage


def test_real_usage_is_believed() -> None:
    counts, problem = values.usage_counts(_usage(), max_tokens=1_000_000)
    assert problem == ""
    assert counts["input_audio_tokens"] == 600 and counts["output_audio_tokens"] == 200
    assert values.usage_counts({"total_tokens": 10, "input_tokens": 10}, max_tokens=1000) == (
        {**dict.fromkeys(values.USAGE_FIELDS, 0), "total_tokens": 10, "input_tokens": 10}, "")


def test_implausible_usage_is_refused_with_a_reason() -> None:
    forged = _usage(output_tokens=2_000_000_000, total_tokens=2_000_001_000,
                    output_token_details={"text_tokens": 0, "audio_tokens": 2_000_000_000})
    cases = [
        forged,
        _usage(total_tokens=10**18),
        _usage(input_tokens=-5),
        _usage(output_tokens="300"),
        _usage(total_tokens=99_999),  # input + output = 1300
        _usage(output_token_details={"text_tokens": 100, "audio_tokens": 900_000}),  # what the cost is computed from
        _usage(input_token_details={"text_tokens": 400, "audio_tokens": 600, "cached_tokens": 50_000}),
        _usage(input_token_details="lots"),
    ]
    for usage in cases:
        _, problem = values.usage_counts(usage, max_tokens=1_000_000)
        assert problem, usage
