"""The newer GA session options operators can set, and every payload the config form allows, checked
against OpenAI's own SDK types (strictly: unknown fields fail) and against our two validators."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from openai.types.realtime import RealtimeSessionCreateRequest
from pydantic import BaseModel

from realtime_emulator import validation as emulator
from realtime_emulator.validation import EmulatorError
from voice.admin import VoiceConfigForm
from voice.models import VoiceConfig
from voice.realtime.session import SessionValidationError, validate_session

pytestmark = pytest.mark.django_db


# --- OpenAI's SDK types, strictly --------------------------------------------------------------------


def _extras(value: Any, path: str) -> Iterator[str]:
    """Paths of fields OpenAI's models accepted only as extras (their models allow unknown fields)."""
    if isinstance(value, BaseModel):
        for key in value.model_extra or {}:
            yield f"{path}.{key}"
        for name in type(value).model_fields:
            yield from _extras(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _extras(item, f"{path}[{index}]")


def openai_accepts(payload: dict[str, Any]) -> None:
    """Raise unless OpenAI's SDK model takes the payload in strict mode with no unknown field anywhere."""
    model = RealtimeSessionCreateRequest.model_validate(payload, strict=True)
    unknown = list(_extras(model, "session"))
    if unknown:
        raise AssertionError(f"fields unknown to OpenAI's types: {unknown}")


def all_validators_accept(payload: dict[str, Any]) -> None:
    openai_accepts(payload)
    validate_session(payload)  # the project's GA validator (voice.realtime)
    emulator.validate_session(json.loads(json.dumps(payload)))  # the emulator's, on the JSON as sent


def test_the_strict_sdk_check_itself_refuses_unknown_and_mistyped_fields() -> None:
    good = VoiceConfig(name="x").to_session_payload()
    openai_accepts(good)
    for bad in (
        {**good, "temperature": 0.8},
        {**good, "audio": {"input": {"bogus": 1}}},
        {**good, "audio": {"input": {"transcription": {"model": "gpt-transcribe", "language_hints": ["en"]}}}},
        {**good, "tools": [{"type": "mcp", "server_label": "crm", "server_url": "https://x", "token": "t"}]},
        {**good, "max_output_tokens": "4096"},
        {**good, "reasoning": {"effort": "extreme"}},
    ):
        with pytest.raises(Exception):  # noqa: B017  (pydantic's ValidationError or our AssertionError)
            openai_accepts(bad)


# --- every payload the form allows ---------------------------------------------------------------------

# Groups of fields that depend on each other: every combination inside a group, and every pair of
# groups' combinations crossed (all other fields at their defaults). Payload parts of different groups
# are built independently, so pairs cover every interaction the builder has.
GROUPS: dict[str, list[dict[str, Any]]] = {
    "model": [
        {"model": m, "reasoning_effort": e, "parallel_tool_calls": p}
        for m, _ in VoiceConfig._meta.get_field("model").choices
        for e in ["", "minimal", "low", "medium", "high", "xhigh"]
        for p in [None, True, False]
    ],
    "transcription": [
        {"input_transcription_model": m, "transcription_languages": langs, "transcription_keywords": kw,
         "transcription_delay": d}
        for m in ["", *(value for value, _ in VoiceConfig._meta.get_field("input_transcription_model").choices)]
        for langs in [[], ["en"], ["en", "fr", "de"]]
        for kw in [[], ["Acme", "Zyxel router"]]
        for d in ["", "minimal", "low", "medium", "high", "xhigh"]
    ],
    "turns": [
        {"turn_detection": "server_vad", "vad_threshold": t, "vad_prefix_padding_ms": p,
         "vad_silence_duration_ms": s, "vad_idle_timeout_ms": i}
        for t, p, s, i in itertools.product([0.0, 1.0], [0, 2000], [100, 5000], [None, 5000, 30000])
    ] + [{"turn_detection": "semantic_vad", "vad_eagerness": e} for e in ["auto", "low", "medium", "high"]]
      + [{"turn_detection": "none", "vad_idle_timeout_ms": i} for i in [None, 5000]],
    "noise": [
        {"noise_reduction": n, "noise_reduction_strength": s}
        for n in ["", "near_field", "far_field"] for s in [None, 0.0, 0.5, 1.0]
    ],
    "truncation": [
        {"truncation": t, "truncation_retention_ratio": r, "truncation_token_limit": limit}
        for t in ["auto", "disabled", "retention_ratio"]
        for r in [None, 0.01, 1.0]
        for limit in [None, 1, 1_000_000]
    ],
    "voice": [
        {"voice": v, "custom_voice_id": c, "speed": s, "output_modality": o}
        for v, c in [("marin", ""), ("alloy", "voice_1234"), ("cedar", "voice_a-b_C9")]
        for s in [0.25, 1.5]
        for o in ["audio", "text"]
    ] + [{"voice": v} for v, _ in VoiceConfig._meta.get_field("voice").choices],
    "tools": [
        {"tools": list(tools), "mcp_server_label": label, "mcp_server_url": url, "mcp_allowed_tools": allowed,
         "mcp_require_approval": approval, "mcp_credential_env": env}
        for tools in [(), ("calculator",), ("calculator", "current_time", "session_history")]
        for label, url in [("", ""), ("crm", "https://mcp.example.com/sse")]
        for allowed in [[], ["lookup_customer", "open-ticket"]]
        for approval in ["never", "always"]
        for env in ["", "VOICE_MCP_CRM"]
    ],
    "limits": [{"max_output_tokens": n} for n in [None, 1, 4096]],
}


def _accepted(values: dict[str, Any]) -> VoiceConfig | None:
    """The config if the form's validation (field validators and choices, then clean()) accepts it."""
    config = VoiceConfig(name="Generated", slug="generated", **values)
    try:
        # Fields left at their defaults are valid (tested elsewhere); checking them 15,000 times is not.
        config.clean_fields(exclude=[f.name for f in VoiceConfig._meta.fields if f.name not in values])
        config.clean()
    except ValidationError:
        return None
    return config


def _combinations() -> Iterator[dict[str, Any]]:
    """Every combination inside each group; then each pair of groups crossed, using the combinations the
    form accepted inside each group (what it refused there it refuses whatever the other fields say)."""
    accepted_by_group = []
    for group in GROUPS.values():
        yield from group
        accepted_by_group.append([values for values in group if _accepted(values) is not None])
    for first, second in itertools.combinations(accepted_by_group, 2):
        for a, b in itertools.product(first, second):
            yield {**a, **b}


@pytest.mark.timeout(300)  # ~15,000 configs; seconds on an idle machine, more on a shared one
def test_every_payload_the_form_allows_is_accepted_by_openais_types_and_both_validators() -> None:
    seen: set[str] = set()
    accepted = refused = 0
    for values in _combinations():
        config = _accepted(values)
        if config is None:
            refused += 1
            continue
        accepted += 1
        payload = config.to_session_payload()
        key = json.dumps(payload, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:
            all_validators_accept(payload)
        except Exception as exc:
            raise AssertionError(f"{values} -> {payload}: {exc}") from exc
    # The sweep is not vacuous: thousands of distinct payloads, and the form does refuse some combinations.
    assert len(seen) > 3000, len(seen)
    assert refused > 100 and accepted > refused
    # Each option appears in some accepted payload.
    blob = "\n".join(seen)
    for needle in ('"reasoning"', '"xhigh"', '"parallel_tool_calls": false', '"languages"', '"language": "en"',
                   '"keywords"', '"delay"', '"strength": 0.5', '"idle_timeout_ms": 30000', '"retention_ratio"',
                   '"post_instructions": 1000000', '"truncation": "disabled"', '{"id": "voice_a-b_C9"}',
                   '"type": "mcp"', '"allowed_tools"', '"require_approval": "always"'):
        assert needle in blob, needle
    assert '"authorization"' not in blob  # a stored payload never holds the MCP credential


# --- each option, where it makes sense -------------------------------------------------------------------


def test_a_config_without_the_new_options_keeps_its_exact_payload() -> None:
    payload = VoiceConfig(name="x").to_session_payload()
    assert set(payload) == {"type", "model", "instructions", "output_modalities", "audio", "tools", "tool_choice",
                            "max_output_tokens"}
    assert payload["audio"]["input"]["turn_detection"] == {
        "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}
    assert payload["audio"]["input"]["transcription"] == {"model": "gpt-transcribe"}


def test_each_option_lands_where_openai_expects_it() -> None:
    config = VoiceConfig(
        name="All", model="gpt-realtime-2.1", reasoning_effort="low", parallel_tool_calls=False,
        custom_voice_id="voice_42", noise_reduction="far_field", noise_reduction_strength=0.4,
        vad_idle_timeout_ms=8000, input_transcription_model="gpt-live-transcribe",
        transcription_languages=["en", "nl"], transcription_keywords=["Zyxel"], truncation="retention_ratio",
        truncation_retention_ratio=0.75, truncation_token_limit=12000, mcp_server_label="crm",
        mcp_server_url="https://mcp.example.com", mcp_allowed_tools=["lookup"], mcp_require_approval="always",
        tools=["calculator"],
    )
    payload = config.to_session_payload()
    assert payload["reasoning"] == {"effort": "low"}
    assert payload["parallel_tool_calls"] is False
    assert payload["audio"]["output"]["voice"] == {"id": "voice_42"}
    audio_in = payload["audio"]["input"]
    assert audio_in["noise_reduction"] == {"type": "far_field", "strength": 0.4}
    assert audio_in["turn_detection"]["idle_timeout_ms"] == 8000
    assert audio_in["transcription"] == {"model": "gpt-live-transcribe", "languages": ["en", "nl"],
                                         "keywords": ["Zyxel"]}
    assert payload["truncation"] == {"type": "retention_ratio", "retention_ratio": 0.75,
                                     "token_limits": {"post_instructions": 12000}}
    assert payload["tools"][1] == {"type": "mcp", "server_label": "crm", "server_url": "https://mcp.example.com",
                                   "require_approval": "always", "allowed_tools": ["lookup"]}
    all_validators_accept(payload)


def test_older_transcription_models_get_one_language_and_whisper_a_delay() -> None:
    old = VoiceConfig(name="o", input_transcription_model="gpt-4o-transcribe", transcription_languages=["de"])
    assert old.to_session_payload()["audio"]["input"]["transcription"] == {"model": "gpt-4o-transcribe",
                                                                           "language": "de"}
    whisper = VoiceConfig(name="w", input_transcription_model="gpt-realtime-whisper", transcription_delay="high")
    assert whisper.to_session_payload()["audio"]["input"]["transcription"] == {"model": "gpt-realtime-whisper",
                                                                               "delay": "high"}


def _form_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Support line", "slug": "support", "is_active": "on", "model": "gpt-realtime-2.1", "voice": "cedar",
        "speed": "1.0", "output_modality": "audio", "instructions": "Be brief.", "turn_detection": "server_vad",
        "vad_threshold": "0.5", "vad_prefix_padding_ms": "300", "vad_silence_duration_ms": "500",
        "vad_eagerness": "auto", "input_transcription_model": "gpt-transcribe", "truncation": "auto",
        "mcp_require_approval": "never", "secret_lifetime_seconds": "600", "max_session_seconds": "900",
        "call_mode": "server",
    }
    data.update(overrides)
    return data


def test_the_form_reads_lists_one_per_line_or_comma_separated() -> None:
    form = VoiceConfigForm(data=_form_data(transcription_languages="en, fr\nde", transcription_keywords="Acme\nZyxel",
                                           mcp_server_label="crm", mcp_server_url="https://mcp.example.com",
                                           mcp_allowed_tools="lookup, open_ticket"))
    assert form.is_valid(), form.errors
    config = form.save()
    assert config.transcription_languages == ["en", "fr", "de"]
    assert config.transcription_keywords == ["Acme", "Zyxel"]
    assert config.mcp_allowed_tools == ["lookup", "open_ticket"]
    # And shows them back the same way.
    assert "en\nfr\nde" in str(VoiceConfigForm(instance=config)["transcription_languages"])


@pytest.mark.parametrize(
    ("overrides", "field", "says"),
    [
        ({"model": "gpt-realtime-1.5", "reasoning_effort": "high"}, "reasoning_effort", "does not reason"),
        ({"model": "gpt-realtime-mini", "parallel_tool_calls": "true"}, "parallel_tool_calls", "does not take"),
        ({"noise_reduction_strength": "0.5"}, "noise_reduction_strength", "Turn noise reduction on"),
        ({"noise_reduction": "near_field", "noise_reduction_strength": "1.5"}, "noise_reduction_strength", ""),
        ({"turn_detection": "semantic_vad", "vad_idle_timeout_ms": "6000"}, "vad_idle_timeout_ms", "server VAD"),
        ({"vad_idle_timeout_ms": "1000"}, "vad_idle_timeout_ms", ""),
        ({"transcription_languages": "english"}, "transcription_languages", "ISO-639-1"),
        ({"input_transcription_model": "gpt-4o-transcribe", "transcription_languages": "en, fr"},
         "transcription_languages", "takes one language"),
        ({"input_transcription_model": "whisper-1", "transcription_keywords": "Acme"}, "transcription_keywords",
         "takes no keywords"),
        ({"transcription_delay": "low"}, "transcription_delay", "only gpt-realtime-whisper"),
        ({"input_transcription_model": "", "transcription_languages": "en"}, "transcription_languages",
         "Choose a transcription model"),
        ({"transcription_keywords": "\n".join(f"k{i}" for i in range(101))}, "transcription_keywords", "up to 100"),
        ({"truncation": "retention_ratio"}, "truncation_retention_ratio", "which fraction"),
        ({"truncation_retention_ratio": "0.5"}, "truncation", "apply only"),
        ({"truncation": "retention_ratio", "truncation_retention_ratio": "0"}, "truncation_retention_ratio", ""),
        ({"custom_voice_id": "my voice"}, "custom_voice_id", "voice_1234"),
        ({"mcp_server_label": "crm"}, "mcp_server_url", "both a label and a URL"),
        ({"mcp_server_label": "crm", "mcp_server_url": "http://mcp.example.com"}, "mcp_server_url", "https://"),
        ({"mcp_server_label": "c r m", "mcp_server_url": "https://mcp.example.com"}, "mcp_server_label", ""),
        ({"mcp_allowed_tools": "lookup"}, "mcp_allowed_tools", "Set the MCP server first"),
        ({"mcp_credential_env": "VOICE_MCP_CRM"}, "mcp_credential_env", "Set the MCP server first"),
        # Any other variable of the process (the OpenAI key, the database URL) cannot be pointed at an MCP server.
        ({"mcp_server_label": "crm", "mcp_server_url": "https://mcp.example.com",
          "mcp_credential_env": "OPENAI_API_KEY"}, "mcp_credential_env", "VOICE_MCP_"),
    ],
)
def test_an_option_that_makes_no_sense_for_the_config_is_a_form_error(overrides: dict[str, str], field: str,
                                                                       says: str) -> None:
    form = VoiceConfigForm(data=_form_data(**overrides))
    assert not form.is_valid()
    assert field in form.errors, form.errors
    assert says in " ".join(form.errors[field])


# --- the validators accept what OpenAI's types accept, and still refuse unknown fields --------------------

SDK_SHAPED = {
    "type": "realtime", "model": "gpt-realtime-2.1",
    "audio": {
        "input": {"noise_reduction": {"type": "near_field", "strength": 0.3},
                  "transcription": {"model": "gpt-transcribe", "languages": ["en"], "keywords": ["x"]},
                  "turn_detection": {"type": "server_vad", "idle_timeout_ms": 6000}},
        "output": {"voice": {"id": "voice_1"}},
    },
    "reasoning": {"effort": "xhigh"}, "parallel_tool_calls": True,
    "tools": [{"type": "mcp", "server_label": "crm", "server_url": "https://m.example.com",
               "allowed_tools": {"read_only": True}, "require_approval": {"never": {"tool_names": ["a"]}}}],
    "tool_choice": {"type": "mcp", "server_label": "crm", "name": "a"},
    "truncation": {"type": "retention_ratio", "retention_ratio": 0.5},
    "tracing": "auto", "include": ["item.input_audio_transcription.logprobs"],
}


def test_both_validators_accept_the_sdk_shapes_of_the_newer_fields() -> None:
    all_validators_accept(SDK_SHAPED)


@pytest.mark.parametrize(
    "path",
    [("reasoning", "budget"), ("audio", "input", "transcription", "hints"), ("audio", "input", "noise_reduction", "x"),
     ("audio", "output", "voice", "name"), ("tools", 0, "token"), ("truncation", "keep"), ("unknown_top_level",)],
)
def test_both_validators_still_refuse_an_unknown_field(path: tuple[Any, ...]) -> None:
    payload = json.loads(json.dumps(SDK_SHAPED))
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = "surprise"
    with pytest.raises(SessionValidationError):
        validate_session(payload)
    with pytest.raises(EmulatorError) as refused:
        emulator.validate_session(payload)
    assert refused.value.code in ("unknown_parameter", "invalid_type")
    with pytest.raises(Exception):  # noqa: B017
        openai_accepts(payload)
