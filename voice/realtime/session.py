"""The GA session object: building it, translating seed-style llm_configs into it, validating it.

GA rejects a whole ``session.update`` that holds one unknown field, and beta-shaped requests fail with
``beta_api_shape_disabled`` (PROTOCOL.md). So nothing leaves this server without passing
``validate_session``, which refuses beta fields with a hint at their GA place and names unknown fields by
path. Other modules (the Django config model, the consumer) may use it too.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voice.realtime.errors import RealtimeConfigError

DEFAULT_API_BASE = "https://api.openai.com/v1"
DEFAULT_VOICE = "alloy"
_LEGACY_SESSIONS_SUFFIX = "/realtime/sessions"

# Beta session fields and where GA puts them; sending any of them fails the whole request.
BETA_SESSION_FIELDS: dict[str, str] = {
    "modalities": "output_modalities (one of 'audio' or 'text')",
    "voice": "audio.output.voice",
    "speed": "audio.output.speed",
    "temperature": "nothing: GA has no temperature",
    "input_audio_format": "audio.input.format",
    "output_audio_format": "audio.output.format",
    "input_audio_transcription": "audio.input.transcription",
    "input_audio_noise_reduction": "audio.input.noise_reduction",
    "turn_detection": "audio.input.turn_detection",
    "max_response_output_tokens": "max_output_tokens",
}

# Top-level llm_config options of the beta era that GA has no place for: read, logged once, never sent.
BETA_ONLY_LLM_CONFIG_KEYS = ("temperature", "modalities", "max_response_output_tokens")


class SessionValidationError(RealtimeConfigError):
    """A session payload the GA API would refuse. ``problems`` lists one line per fault."""

    code = "session_invalid"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("Invalid GA session: " + "; ".join(problems))
        self.problems = problems


# --- warn once ------------------------------------------------------------------------------------

# Per process: a deprecated setting is worth one line in the logs, not one per voice session.
_warned: set[str] = set()


def warn_once(logger: logging.Logger, key: str, message: str) -> None:
    if key in _warned:
        return
    _warned.add(key)
    logger.warning(message)


def reset_warnings() -> None:
    """Forget which warnings were logged (for tests)."""
    _warned.clear()


# --- the GA schema --------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AudioFormat(_Strict):
    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
    rate: Literal[24000] | None = None


Effort = Literal["minimal", "low", "medium", "high", "xhigh"]


class Transcription(_Strict):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    # Newer models: several language hints and keywords (gpt-transcribe, gpt-live-transcribe), and the
    # latency/accuracy trade-off of gpt-realtime-whisper.
    languages: list[str] | None = None
    keywords: list[str] | None = None
    delay: Effort | None = None


class ServerVad(_Strict):
    type: Literal["server_vad"]
    threshold: float | None = Field(default=None, ge=0, le=1)
    prefix_padding_ms: int | None = Field(default=None, ge=0)
    silence_duration_ms: int | None = Field(default=None, ge=0)
    create_response: bool | None = None
    interrupt_response: bool | None = None
    idle_timeout_ms: int | None = Field(default=None, ge=0)


class SemanticVad(_Strict):
    type: Literal["semantic_vad"]
    eagerness: Literal["low", "medium", "high", "auto"] | None = None
    create_response: bool | None = None
    interrupt_response: bool | None = None


class NoiseReduction(_Strict):
    # OpenAI's types make both optional: an update may change the strength alone.
    type: Literal["near_field", "far_field"] | None = None
    strength: float | None = None


class AudioInput(_Strict):
    format: AudioFormat | None = None
    transcription: Transcription | None = None
    # null turns voice activity detection off (push to talk).
    turn_detection: Annotated[ServerVad | SemanticVad, Field(discriminator="type")] | None = None
    noise_reduction: NoiseReduction | None = None


class CustomVoice(_Strict):
    id: str = Field(min_length=1)


class AudioOutput(_Strict):
    format: AudioFormat | None = None
    voice: Annotated[str, Field(min_length=1)] | CustomVoice | None = None
    speed: float | None = Field(default=None, ge=0.25, le=1.5)


class Audio(_Strict):
    input: AudioInput | None = None
    output: AudioOutput | None = None


class FunctionTool(_Strict):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


class ToolFilter(_Strict):
    read_only: bool | None = None
    tool_names: list[str] | None = None


class ApprovalFilter(_Strict):
    always: ToolFilter | None = None
    never: ToolFilter | None = None


McpConnector = Literal[
    "connector_dropbox", "connector_gmail", "connector_googlecalendar", "connector_googledrive",
    "connector_microsoftteams", "connector_outlookcalendar", "connector_outlookemail", "connector_sharepoint",
]


class McpTool(_Strict):
    """A remote MCP server that OpenAI calls for the model (not run by this server)."""

    type: Literal["mcp"]
    server_label: str = Field(min_length=1)
    server_url: str | None = None
    connector_id: McpConnector | None = None
    tunnel_id: str | None = None
    server_description: str | None = None
    allowed_tools: list[str] | ToolFilter | None = None
    allowed_callers: list[Literal["direct", "programmatic"]] | None = None
    require_approval: Literal["always", "never"] | ApprovalFilter | None = None
    authorization: str | None = None
    headers: dict[str, str] | None = None
    defer_loading: bool | None = None


class ToolChoiceFunction(_Strict):
    type: Literal["function"]
    name: str


class ToolChoiceMcp(_Strict):
    type: Literal["mcp"]
    server_label: str
    name: str | None = None


class Reasoning(_Strict):
    effort: Effort | None = None


class TokenLimits(_Strict):
    post_instructions: int | None = Field(default=None, ge=0)


class RetentionRatio(_Strict):
    type: Literal["retention_ratio"]
    retention_ratio: float = Field(ge=0, le=1)
    token_limits: TokenLimits | None = None


class Tracing(_Strict):
    workflow_name: str | None = None
    group_id: str | None = None
    metadata: Any = None


class Prompt(_Strict):
    id: str
    version: str | None = None
    variables: dict[str, Any] | None = None


class GASession(_Strict):
    type: Literal["realtime"]
    model: str | None = Field(default=None, min_length=1)
    instructions: str | None = None
    output_modalities: list[Literal["audio", "text"]] | None = Field(default=None, min_length=1, max_length=1)
    audio: Audio | None = None
    tools: list[Annotated[FunctionTool | McpTool, Field(discriminator="type")]] | None = None
    tool_choice: (
        Literal["none", "auto", "required"]
        | Annotated[ToolChoiceFunction | ToolChoiceMcp, Field(discriminator="type")]
        | None
    ) = None
    max_output_tokens: Annotated[int, Field(ge=1, le=4096)] | Literal["inf"] | None = None
    include: list[Literal["item.input_audio_transcription.logprobs"]] | None = None
    tracing: Literal["auto"] | Tracing | None = None
    truncation: Literal["auto", "disabled"] | RetentionRatio | None = None
    prompt: Prompt | None = None
    reasoning: Reasoning | None = None
    parallel_tool_calls: bool | None = None


def _readable_path(data: Any, loc: tuple[int | str, ...]) -> str:
    """The error's location as a path through the input; pydantic adds union member labels, skip them."""
    parts: list[str] = []
    for part in loc:
        in_mapping = isinstance(data, Mapping) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if not (in_mapping or in_list):
            continue
        data = data[part]
        parts.append(str(part))
    return ".".join(parts) or "session"


def validate_session(session: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Return a copy of ``session`` if GA would accept it, else raise ``SessionValidationError``.

    ``partial=False`` (a session to mint with) also requires ``model``. The payload is returned as given,
    not re-serialised, so explicit nulls (``"turn_detection": null`` means "off") survive.
    """
    if not isinstance(session, Mapping):
        raise SessionValidationError([f"session must be an object, got {type(session).__name__}"])
    problems = [
        f"'{field}' is a beta field; GA puts it in {BETA_SESSION_FIELDS[field]}"
        for field in session
        if field in BETA_SESSION_FIELDS
    ]
    if problems:
        raise SessionValidationError(problems)
    try:
        GASession.model_validate(dict(session))
    except ValidationError as exc:
        by_path: dict[str, list[str]] = {}
        for error in exc.errors():
            what = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
            path = _readable_path(session, error["loc"])
            if error["type"] == "missing":
                # A missing field is not in the input, so name it explicitly.
                path = f"{path}.{error['loc'][-1]}" if path != "session" else str(error["loc"][-1])
            by_path.setdefault(path, []).append(what)
        # A union (e.g. max_output_tokens: int or "inf") fails once per member; say it in one line.
        problems.extend(f"{path}: {' or '.join(dict.fromkeys(whats))}" for path, whats in by_path.items())
    if not partial and not session.get("model"):
        problems.append("model: required")
    if problems:
        raise SessionValidationError(sorted(set(problems)))
    return copy.deepcopy(dict(session))


# --- secrets in sessions --------------------------------------------------------------------------

# Fields of a tool that carry credentials (an MCP server's OAuth token or auth headers). They go to
# OpenAI from the server only; nothing shown to a browser, logged or stored may hold them.
TOOL_SECRET_FIELDS = ("authorization", "headers")
_SESSION_FRAMES = frozenset({"session.created", "session.updated", "session.update"})


def without_secrets(session: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``session`` whose tools hold no credential (the rest untouched)."""
    clean = dict(session)
    tools = session.get("tools")
    if isinstance(tools, list) and any(
        isinstance(t, Mapping) and any(k in t for k in TOOL_SECRET_FIELDS) for t in tools
    ):
        clean["tools"] = [
            {k: v for k, v in t.items() if k not in TOOL_SECRET_FIELDS} if isinstance(t, Mapping) else t
            for t in tools
        ]
    return clean


def frame_without_secrets(frame: dict[str, Any]) -> dict[str, Any]:
    """``frame`` itself, or for a session event whose session holds a credential, a copy without it."""
    if frame.get("type") in _SESSION_FRAMES and isinstance(frame.get("session"), Mapping):
        clean = without_secrets(frame["session"])
        if clean.get("tools") is not frame["session"].get("tools"):
            return {**frame, "session": clean}
    return frame


# --- building -------------------------------------------------------------------------------------


def build_session(
    *,
    model: str,
    voice: str = DEFAULT_VOICE,
    instructions: str | None = None,
    output_modality: Literal["audio", "text"] = "audio",
    turn_detection: dict[str, Any] | None = None,
    transcription_model: str | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A GA session object. Server VAD unless ``turn_detection`` says otherwise."""
    audio_input: dict[str, Any] = {"turn_detection": turn_detection or {"type": "server_vad"}}
    if transcription_model:
        audio_input["transcription"] = {"model": transcription_model}
    session: dict[str, Any] = {
        "type": "realtime",
        "model": model,
        "output_modalities": [output_modality],
        "audio": {"input": audio_input, "output": {"voice": voice}},
    }
    if instructions is not None:
        session["instructions"] = instructions
    if tools:
        session["tools"] = tools
        session["tool_choice"] = "auto"
    return validate_session(session)


def normalise_api_base(base_url: str | None, logger: logging.Logger) -> str:
    """The API base (``https://api.openai.com/v1``). A seed-era ``.../realtime/sessions`` is cut back."""
    base = (base_url or DEFAULT_API_BASE).strip().rstrip("/")
    if base.endswith(_LEGACY_SESSIONS_SUFFIX):
        base = base[: -len(_LEGACY_SESSIONS_SUFFIX)]
        warn_once(
            logger,
            "legacy_base_url",
            f"base_url ending in {_LEGACY_SESSIONS_SUFFIX} is deprecated (beta API); "
            f"using the API base {base} instead. Set base_url to the API base.",
        )
    if not base.startswith(("http://", "https://")):
        raise RealtimeConfigError(f"base_url must be an http(s) URL, got {base!r}")
    return base


def session_from_llm_config(llm_config: Mapping[str, Any], logger: logging.Logger) -> dict[str, Any]:
    """The GA session to mint with, from a seed-style llm_config.

    A prebuilt ``llm_config["session"]`` (``VoiceConfig.to_session_payload()``) wins over the translation;
    it gets ``type`` and, if missing, ``model`` from ``config_list[0]``. Otherwise the session is
    ``config_list[0]``'s model and voice with server VAD. Beta-only top-level options are dropped.
    """
    config = first_config(llm_config)
    for key in BETA_ONLY_LLM_CONFIG_KEYS:
        if key in llm_config:
            warn_once(
                logger,
                f"beta_option_{key}",
                f"llm_config[{key!r}] is a beta-only option the GA Realtime API does not accept; it is ignored.",
            )
    prebuilt = llm_config.get("session")
    if prebuilt is not None:
        if not isinstance(prebuilt, Mapping):
            raise SessionValidationError([f"llm_config['session'] must be an object, got {type(prebuilt).__name__}"])
        session = {"type": "realtime", **prebuilt}
        session.setdefault("model", config["model"])
        return validate_session(session)
    return build_session(model=config["model"], voice=config.get("voice") or DEFAULT_VOICE)


def first_config(llm_config: Mapping[str, Any]) -> dict[str, Any]:
    """``llm_config["config_list"][0]``, checked: it must exist and name a model."""
    config_list = llm_config.get("config_list") if isinstance(llm_config, Mapping) else None
    if not isinstance(config_list, list) or not config_list or not isinstance(config_list[0], Mapping):
        raise RealtimeConfigError("llm_config needs a non-empty 'config_list' whose first entry is an object")
    config = dict(config_list[0])
    if not isinstance(config.get("model"), str) or not config["model"]:
        raise RealtimeConfigError("llm_config['config_list'][0]['model'] is required (e.g. 'gpt-realtime')")
    return config


__all__ = [
    "BETA_ONLY_LLM_CONFIG_KEYS",
    "BETA_SESSION_FIELDS",
    "DEFAULT_API_BASE",
    "DEFAULT_VOICE",
    "GASession",
    "SessionValidationError",
    "build_session",
    "first_config",
    "frame_without_secrets",
    "normalise_api_base",
    "reset_warnings",
    "session_from_llm_config",
    "validate_session",
    "warn_once",
    "without_secrets",
]
