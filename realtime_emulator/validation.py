"""Strict validation of the GA Realtime shapes the emulator accepts.

The emulator exists to catch mistakes before they reach OpenAI, so it errs on the side of refusing:
the GA API rejects a whole session (or session.update) that holds one unknown field, and answers
beta-shaped sessions with ``beta_api_shape_disabled``. Error codes and messages imitate OpenAI's
(``unknown_parameter``, ``invalid_type``, ``invalid_value``, ``integer_above_max_value`` ...) so the
product's error handling is exercised with realistic bodies. No Django and no aiohttp in here: pure
functions over JSON-like values, tested directly.
"""

from __future__ import annotations

import copy
import re
import secrets
from typing import Any

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
# Accept the GA realtime family by pattern rather than a closed list: new snapshots appear often and
# an emulator that refuses a real model name is a worse failure than one that accepts a future one.
MODEL_PATTERN = re.compile(r"^gpt-(realtime|4o-realtime-preview|4o-mini-realtime-preview)[\w.\-]*$")
TRANSCRIPTION_MODEL_PATTERN = re.compile(r"^(whisper-1|gpt-realtime-whisper|gpt-[\w.\-]*transcribe[\w.\-]*)$")
TRANSCRIPTION_MODELS = ("gpt-transcribe", "gpt-live-transcribe", "gpt-realtime-whisper", "whisper-1",
                        "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-transcribe-diarize")
TOOL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
AUDIO_FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")
MIN_EXPIRES_SECONDS = 10
MAX_EXPIRES_SECONDS = 7200
DEFAULT_EXPIRES_SECONDS = 600
MAX_OUTPUT_TOKENS = 4096
DEFAULT_INSTRUCTIONS = "You are a helpful voice assistant. (Offline emulator: replies come from a script.)"

# Beta (shut down May 2026) session fields and where GA moved them; used to explain the rejection.
BETA_SESSION_FIELDS: dict[str, str] = {
    "modalities": "session.output_modalities",
    "voice": "session.audio.output.voice",
    "speed": "session.audio.output.speed",
    "turn_detection": "session.audio.input.turn_detection",
    "input_audio_format": "session.audio.input.format",
    "output_audio_format": "session.audio.output.format",
    "input_audio_transcription": "session.audio.input.transcription",
    "input_audio_noise_reduction": "session.audio.input.noise_reduction",
    "max_response_output_tokens": "session.max_output_tokens",
    "temperature": "nothing (GA has no temperature)",
}
BETA_RESPONSE_FIELDS: dict[str, str] = {
    "modalities": "response.output_modalities",
    "voice": "response.audio.output.voice",
    "output_audio_format": "response.audio.output.format",
    "max_response_output_tokens": "response.max_output_tokens",
    "temperature": "nothing (GA has no temperature)",
}

SESSION_FIELDS = frozenset(
    {
        "type",
        "model",
        "instructions",
        "output_modalities",
        "audio",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "tracing",
        "truncation",
        "prompt",
        "include",
        "reasoning",
        "parallel_tool_calls",
    }
)
EFFORTS = ("minimal", "low", "medium", "high", "xhigh")
MCP_CONNECTORS = (
    "connector_dropbox", "connector_gmail", "connector_googlecalendar", "connector_googledrive",
    "connector_microsoftteams", "connector_outlookcalendar", "connector_outlookemail", "connector_sharepoint",
)
MCP_TOOL_FIELDS = frozenset(
    {"type", "server_label", "server_url", "connector_id", "tunnel_id", "server_description", "allowed_tools",
     "allowed_callers", "require_approval", "authorization", "headers", "defer_loading"}
)
# OpenAI keeps an MCP server's credentials to itself: the effective session it reports leaves them out.
MCP_SECRET_FIELDS = ("authorization", "headers")

# Allowed top-level keys of each client event; anything else is an unknown parameter.
CLIENT_EVENT_FIELDS: dict[str, frozenset[str]] = {
    "session.update": frozenset({"session"}),
    "input_audio_buffer.append": frozenset({"audio"}),
    "input_audio_buffer.commit": frozenset(),
    "input_audio_buffer.clear": frozenset(),
    "conversation.item.create": frozenset({"previous_item_id", "item"}),
    "conversation.item.retrieve": frozenset({"item_id"}),
    "conversation.item.delete": frozenset({"item_id"}),
    "conversation.item.truncate": frozenset({"item_id", "content_index", "audio_end_ms"}),
    "response.create": frozenset({"response"}),
    "response.cancel": frozenset({"response_id"}),
    "output_audio_buffer.clear": frozenset({"response_id"}),
}


class EmulatorError(Exception):
    """An error OpenAI would report; rendered as an HTTP error body or an ``error`` server event."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None,
        param: str | None = None,
        type_: str = "invalid_request_error",
        status: int = 400,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.type = type_
        self.status = status

    def body(self) -> dict[str, Any]:
        """The ``{"error": {...}}`` body of an HTTP error response."""
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}


def new_id(prefix: str, nbytes: int = 12) -> str:
    """OpenAI-looking identifiers (``item_...``, ``resp_...``); random, the script fixes only content."""
    return f"{prefix}_{secrets.token_hex(nbytes)}"


# --- small checkers -----------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _invalid_type(path: str, expected: str, value: Any) -> EmulatorError:
    return EmulatorError(
        f"Invalid type for '{path}': expected {expected}, but got {_type_name(value)} instead.",
        code="invalid_type",
        param=path,
    )


def _invalid_value(path: str, value: Any, supported: tuple[str, ...] | None = None, hint: str = "") -> EmulatorError:
    message = f"Invalid value: '{value}'."
    if supported:
        message += " Supported values are: " + ", ".join(f"'{s}'" for s in supported) + "."
    if hint:
        message += " " + hint
    return EmulatorError(message, code="invalid_value", param=path)


def unknown_parameter(path: str) -> EmulatorError:
    return EmulatorError(f"Unknown parameter: '{path}'.", code="unknown_parameter", param=path)


def missing_parameter(path: str) -> EmulatorError:
    return EmulatorError(f"Missing required parameter: '{path}'.", code="missing_required_parameter", param=path)


def beta_shape(path: str, replacement: str) -> EmulatorError:
    return EmulatorError(
        f"'{path}' belongs to the beta Realtime API, which has been shut down. "
        f"Use the GA shape instead: {replacement}.",
        code="beta_api_shape_disabled",
        param=path,
    )


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid_type(path, "an object", value)
    return value


def _check_keys(obj: dict[str, Any], allowed: frozenset[str] | set[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise unknown_parameter(f"{path}.{key}")


def _string(value: Any, path: str, *, max_length: int | None = None) -> str:
    if not isinstance(value, str):
        raise _invalid_type(path, "a string", value)
    if max_length is not None and len(value) > max_length:
        raise EmulatorError(
            f"Invalid '{path}': string too long. Expected a string with maximum length {max_length}, "
            f"but got a string with length {len(value)} instead.",
            code="string_above_max_length",
            param=path,
        )
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _invalid_type(path, "a boolean", value)
    return value


def _integer(value: Any, path: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    # bool is an int in Python but not in JSON schema; OpenAI refuses true where it wants a number.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_type(path, "an integer", value)
    if minimum is not None and value < minimum:
        raise EmulatorError(
            f"Invalid '{path}': integer below minimum value. Expected a value >= {minimum}, but got {value} instead.",
            code="integer_below_min_value",
            param=path,
        )
    if maximum is not None and value > maximum:
        raise EmulatorError(
            f"Invalid '{path}': integer above maximum value. Expected a value <= {maximum}, but got {value} instead.",
            code="integer_above_max_value",
            param=path,
        )
    return value


def _number(value: Any, path: str, *, minimum: float, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid_type(path, "a number", value)
    if value < minimum:
        raise EmulatorError(
            f"Invalid '{path}': decimal below minimum value. Expected a value >= {minimum}, but got {value} instead.",
            code="decimal_below_min_value",
            param=path,
        )
    if value > maximum:
        raise EmulatorError(
            f"Invalid '{path}': decimal above maximum value. Expected a value <= {maximum}, but got {value} instead.",
            code="decimal_above_max_value",
            param=path,
        )
    return float(value)


def _choice(value: Any, path: str, supported: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise _invalid_type(path, "a string", value)
    if value not in supported:
        raise _invalid_value(path, value, supported)
    return value


# --- session --------------------------------------------------------------------------------------


def default_turn_detection(kind: str = "server_vad") -> dict[str, Any]:
    if kind == "semantic_vad":
        return {"type": "semantic_vad", "eagerness": "auto", "create_response": True, "interrupt_response": True}
    return {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }


def default_session(model: str = "gpt-realtime") -> dict[str, Any]:
    """The effective session OpenAI reports when a request leaves a field out."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": default_turn_detection(),
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy", "speed": 1.0},
        },
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "include": None,
    }


def _audio_format(value: Any, path: str) -> dict[str, Any]:
    fmt = _object(value, path)
    if "type" not in fmt:
        raise missing_parameter(f"{path}.type")
    kind = _choice(fmt["type"], f"{path}.type", AUDIO_FORMATS)
    if kind == "audio/pcm":
        _check_keys(fmt, {"type", "rate"}, path)
        if "rate" in fmt and _integer(fmt["rate"], f"{path}.rate") != 24000:
            raise _invalid_value(f"{path}.rate", fmt["rate"], ("24000",))
        return {"type": kind, "rate": 24000}
    _check_keys(fmt, {"type"}, path)
    return {"type": kind}


def _transcription(value: Any, path: str) -> dict[str, Any] | None:
    if value is None:
        return None
    obj = _object(value, path)
    _check_keys(obj, {"model", "language", "prompt", "languages", "keywords", "delay"}, path)
    if "model" not in obj:
        raise missing_parameter(f"{path}.model")
    model = _string(obj["model"], f"{path}.model")
    if not TRANSCRIPTION_MODEL_PATTERN.match(model):
        raise _invalid_value(f"{path}.model", model, TRANSCRIPTION_MODELS)
    result: dict[str, Any] = {"model": model}
    if "language" in obj and obj["language"] is not None:
        language = _string(obj["language"], f"{path}.language")
        if not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z]{2})?", language):
            raise _invalid_value(f"{path}.language", language, hint="Use an ISO-639-1 code such as 'en'.")
        result["language"] = language
    if "prompt" in obj and obj["prompt"] is not None:
        result["prompt"] = _string(obj["prompt"], f"{path}.prompt")
    for key in ("languages", "keywords"):
        if obj.get(key) is not None:
            result[key] = _string_list(obj[key], f"{path}.{key}")
    if "languages" in result:
        for index, language in enumerate(result["languages"]):
            if not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z]{2})?", language):
                raise _invalid_value(f"{path}.languages[{index}]", language, hint="Use ISO-639-1 codes such as 'en'.")
    if obj.get("delay") is not None:
        result["delay"] = _choice(obj["delay"], f"{path}.delay", EFFORTS)
    return result


def _string_list(value: Any, path: str) -> list[str]:
    if not isinstance(value, list):
        raise _invalid_type(path, "an array", value)
    return [_string(entry, f"{path}[{index}]") for index, entry in enumerate(value)]


def _turn_detection(value: Any, path: str) -> dict[str, Any] | None:
    if value is None:
        return None
    obj = _object(value, path)
    if "type" not in obj:
        raise missing_parameter(f"{path}.type")
    kind = _choice(obj["type"], f"{path}.type", ("server_vad", "semantic_vad"))
    result = default_turn_detection(kind)
    if kind == "server_vad":
        _check_keys(
            obj,
            {
                "type",
                "threshold",
                "prefix_padding_ms",
                "silence_duration_ms",
                "idle_timeout_ms",
                "create_response",
                "interrupt_response",
            },
            path,
        )
        if "threshold" in obj:
            result["threshold"] = _number(obj["threshold"], f"{path}.threshold", minimum=0.0, maximum=1.0)
        for key in ("prefix_padding_ms", "silence_duration_ms"):
            if key in obj:
                result[key] = _integer(obj[key], f"{path}.{key}", minimum=0, maximum=10_000)
        if obj.get("idle_timeout_ms") is not None:
            result["idle_timeout_ms"] = _integer(
                obj["idle_timeout_ms"], f"{path}.idle_timeout_ms", minimum=5_000, maximum=30_000
            )
    else:
        _check_keys(obj, {"type", "eagerness", "create_response", "interrupt_response"}, path)
        if "eagerness" in obj:
            result["eagerness"] = _choice(obj["eagerness"], f"{path}.eagerness", ("low", "medium", "high", "auto"))
    for key in ("create_response", "interrupt_response"):
        if key in obj:
            result[key] = _bool(obj[key], f"{path}.{key}")
    return result


def _noise_reduction(value: Any, path: str) -> dict[str, Any] | None:
    if value is None:
        return None
    obj = _object(value, path)
    _check_keys(obj, {"type", "strength"}, path)
    if "type" not in obj:
        raise missing_parameter(f"{path}.type")
    result: dict[str, Any] = {"type": _choice(obj["type"], f"{path}.type", ("near_field", "far_field"))}
    if obj.get("strength") is not None:
        # Bounds unconfirmed: OpenAI documents only "higher values apply more suppression, default 1".
        result["strength"] = _number(obj["strength"], f"{path}.strength", minimum=0.0, maximum=1.0)
    return result


def _voice(value: Any, path: str) -> str | dict[str, str]:
    if isinstance(value, dict):  # a custom voice: {"id": "voice_..."}
        _check_keys(value, {"id"}, path)
        if "id" not in value:
            raise missing_parameter(f"{path}.id")
        voice_id = _string(value["id"], f"{path}.id")
        if not re.fullmatch(r"voice_[A-Za-z0-9_-]+", voice_id):
            raise _invalid_value(f"{path}.id", voice_id, hint="Custom voice ids look like 'voice_1234'.")
        return {"id": voice_id}
    return _choice(value, path, VOICES)


def _output_modalities(value: Any, path: str) -> list[str]:
    if not isinstance(value, list):
        raise _invalid_type(path, "an array", value)
    if value not in (["audio"], ["text"]):
        raise EmulatorError(
            f"Invalid value for '{path}': {value!r}. Supported values are ['audio'] or ['text'] "
            "(audio output always includes its transcript; both at once is not allowed).",
            code="invalid_value",
            param=path,
        )
    return list(value)


def _max_output_tokens(value: Any, path: str) -> int | str:
    if value == "inf":
        return "inf"
    if isinstance(value, str):
        raise _invalid_value(path, value, ("inf",), hint="Or an integer between 1 and 4096.")
    return _integer(value, path, minimum=1, maximum=MAX_OUTPUT_TOKENS)


def _tools(value: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _invalid_type(path, "an array", value)
    tools: list[dict[str, Any]] = []
    names: set[str] = set()
    for index, raw in enumerate(value):
        item_path = f"{path}[{index}]"
        tool = _object(raw, item_path)
        if "type" not in tool:
            raise missing_parameter(f"{item_path}.type")
        kind = _choice(tool["type"], f"{item_path}.type", ("function", "mcp"))
        if kind == "mcp":
            tools.append(_mcp_tool(tool, item_path))
            continue
        _check_keys(tool, {"type", "name", "description", "parameters"}, item_path)
        if "name" not in tool:
            raise missing_parameter(f"{item_path}.name")
        name = _string(tool["name"], f"{item_path}.name")
        if not TOOL_NAME_PATTERN.match(name):
            raise EmulatorError(
                f"Invalid '{item_path}.name': string does not match pattern. Expected a string that matches "
                f"the pattern '{TOOL_NAME_PATTERN.pattern}'.",
                code="invalid_value",
                param=f"{item_path}.name",
            )
        if name in names:
            raise EmulatorError(
                f"Duplicate tool name '{name}' in '{path}'.", code="invalid_value", param=f"{item_path}.name"
            )
        names.add(name)
        entry: dict[str, Any] = {"type": "function", "name": name}
        if "description" in tool:
            entry["description"] = _string(tool["description"], f"{item_path}.description")
        if "parameters" in tool:
            params = _object(tool["parameters"], f"{item_path}.parameters")
            if "type" in params and params["type"] != "object":
                raise _invalid_value(f"{item_path}.parameters.type", params["type"], ("object",))
            entry["parameters"] = copy.deepcopy(params)
        tools.append(entry)
    return tools


def _tool_filter(value: Any, path: str) -> None:
    obj = _object(value, path)
    _check_keys(obj, {"read_only", "tool_names"}, path)
    if obj.get("read_only") is not None:
        _bool(obj["read_only"], f"{path}.read_only")
    if obj.get("tool_names") is not None:
        _string_list(obj["tool_names"], f"{path}.tool_names")


def _mcp_tool(tool: dict[str, Any], path: str) -> dict[str, Any]:
    """An MCP tool as OpenAI's types describe it. The emulator never calls the server."""
    _check_keys(tool, MCP_TOOL_FIELDS, path)
    if "server_label" not in tool:
        raise missing_parameter(f"{path}.server_label")
    _string(tool["server_label"], f"{path}.server_label")
    if not any(tool.get(key) is not None for key in ("server_url", "connector_id", "tunnel_id")):
        raise missing_parameter(f"{path}.server_url")
    for key in ("server_url", "tunnel_id", "server_description", "authorization"):
        if tool.get(key) is not None:
            _string(tool[key], f"{path}.{key}")
    if tool.get("connector_id") is not None:
        _choice(tool["connector_id"], f"{path}.connector_id", MCP_CONNECTORS)
    allowed = tool.get("allowed_tools")
    if isinstance(allowed, list):
        _string_list(allowed, f"{path}.allowed_tools")
    elif allowed is not None:
        _tool_filter(allowed, f"{path}.allowed_tools")
    approval = tool.get("require_approval")
    if isinstance(approval, str):
        _choice(approval, f"{path}.require_approval", ("always", "never"))
    elif approval is not None:
        obj = _object(approval, f"{path}.require_approval")
        _check_keys(obj, {"always", "never"}, f"{path}.require_approval")
        for key in ("always", "never"):
            if obj.get(key) is not None:
                _tool_filter(obj[key], f"{path}.require_approval.{key}")
    if tool.get("allowed_callers") is not None:
        for index, caller in enumerate(_string_list(tool["allowed_callers"], f"{path}.allowed_callers")):
            _choice(caller, f"{path}.allowed_callers[{index}]", ("direct", "programmatic"))
    if tool.get("headers") is not None:
        for key, header in _object(tool["headers"], f"{path}.headers").items():
            _string(header, f"{path}.headers.{key}")
    if tool.get("defer_loading") is not None:
        _bool(tool["defer_loading"], f"{path}.defer_loading")
    return {k: copy.deepcopy(v) for k, v in tool.items() if k not in MCP_SECRET_FIELDS}


def _reasoning(value: Any, path: str) -> dict[str, Any] | None:
    if value is None:
        return None
    obj = _object(value, path)
    _check_keys(obj, {"effort"}, path)
    if obj.get("effort") is not None:
        return {"effort": _choice(obj["effort"], f"{path}.effort", EFFORTS)}
    return {}


def _tool_choice(value: Any, path: str) -> str | dict[str, Any]:
    if isinstance(value, str):
        return _choice(value, path, ("auto", "none", "required"))
    obj = _object(value, path)
    if obj.get("type") == "function":
        _check_keys(obj, {"type", "name"}, path)
        if "name" not in obj:
            raise missing_parameter(f"{path}.name")
        return {"type": "function", "name": _string(obj["name"], f"{path}.name")}
    if obj.get("type") == "mcp":
        _check_keys(obj, {"type", "server_label", "name"}, path)
        return copy.deepcopy(obj)
    raise _invalid_value(f"{path}.type", obj.get("type"), ("function", "mcp"))


def _tracing(value: Any, path: str) -> str | dict[str, Any] | None:
    if value is None or value == "auto":
        return value
    obj = _object(value, path)
    _check_keys(obj, {"workflow_name", "group_id", "metadata"}, path)
    for key in ("workflow_name", "group_id"):
        if key in obj:
            _string(obj[key], f"{path}.{key}")
    if "metadata" in obj:
        _object(obj["metadata"], f"{path}.metadata")
    return copy.deepcopy(obj)


def _truncation(value: Any, path: str) -> str | dict[str, Any]:
    if isinstance(value, str):
        return _choice(value, path, ("auto", "disabled"))
    obj = _object(value, path)
    _check_keys(obj, {"type", "retention_ratio", "token_limits"}, path)
    _choice(obj.get("type"), f"{path}.type", ("retention_ratio",))
    if "retention_ratio" not in obj:
        raise missing_parameter(f"{path}.retention_ratio")
    _number(obj["retention_ratio"], f"{path}.retention_ratio", minimum=0.0, maximum=1.0)
    if "token_limits" in obj:
        limits = _object(obj["token_limits"], f"{path}.token_limits")
        _check_keys(limits, {"post_instructions"}, f"{path}.token_limits")
        if "post_instructions" in limits:
            _integer(limits["post_instructions"], f"{path}.token_limits.post_instructions", minimum=0)
    return copy.deepcopy(obj)


def _prompt(value: Any, path: str) -> dict[str, Any] | None:
    if value is None:
        return None
    obj = _object(value, path)
    _check_keys(obj, {"id", "version", "variables"}, path)
    if "id" not in obj:
        raise missing_parameter(f"{path}.id")
    _string(obj["id"], f"{path}.id")
    if "version" in obj and obj["version"] is not None:
        _string(obj["version"], f"{path}.version")
    if "variables" in obj and obj["variables"] is not None:
        _object(obj["variables"], f"{path}.variables")
    return copy.deepcopy(obj)


def _include(value: Any, path: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise _invalid_type(path, "an array", value)
    for index, entry in enumerate(value):
        _choice(entry, f"{path}[{index}]", ("item.input_audio_transcription.logprobs",))
    return list(value)


def _merge_audio(raw: Any, current: dict[str, Any], path: str) -> dict[str, Any]:
    audio = _object(raw, path)
    _check_keys(audio, {"input", "output"}, path)
    merged = copy.deepcopy(current)
    if "input" in audio:
        inp = _object(audio["input"], f"{path}.input")
        _check_keys(inp, {"format", "transcription", "turn_detection", "noise_reduction"}, f"{path}.input")
        target = merged["input"]
        if "format" in inp:
            target["format"] = _audio_format(inp["format"], f"{path}.input.format")
        if "transcription" in inp:
            target["transcription"] = _transcription(inp["transcription"], f"{path}.input.transcription")
        if "turn_detection" in inp:
            target["turn_detection"] = _turn_detection(inp["turn_detection"], f"{path}.input.turn_detection")
        if "noise_reduction" in inp:
            target["noise_reduction"] = _noise_reduction(inp["noise_reduction"], f"{path}.input.noise_reduction")
    if "output" in audio:
        out = _object(audio["output"], f"{path}.output")
        _check_keys(out, {"format", "voice", "speed"}, f"{path}.output")
        target = merged["output"]
        if "format" in out:
            target["format"] = _audio_format(out["format"], f"{path}.output.format")
        if "voice" in out:
            target["voice"] = _voice(out["voice"], f"{path}.output.voice")
        if "speed" in out:
            target["speed"] = _number(out["speed"], f"{path}.output.speed", minimum=0.25, maximum=1.5)
    return merged


def validate_session(
    raw: Any,
    *,
    current: dict[str, Any] | None = None,
    path: str = "session",
    voice_locked: bool = False,
) -> dict[str, Any]:
    """Validate a GA session object and return the effective session after applying it.

    ``current`` is the session being updated (``session.update``); without it the request is a new
    session and starts from the defaults. The result is a new dict; ``current`` is never mutated, so a
    rejected update leaves the session exactly as it was (GA rejects the whole update).
    """
    session = _object(raw, path)
    # Beta fields first: a beta-shaped payload should be told it is beta, not that "voice" is unknown.
    for key in session:
        if key in BETA_SESSION_FIELDS:
            raise beta_shape(f"{path}.{key}", BETA_SESSION_FIELDS[key])
    _check_keys(session, SESSION_FIELDS, path)
    if "type" not in session:
        raise missing_parameter(f"{path}.type")
    if session["type"] != "realtime":
        raise _invalid_value(f"{path}.type", session["type"], ("realtime",))

    result = copy.deepcopy(current) if current is not None else default_session()
    if "model" in session:
        model = _string(session["model"], f"{path}.model")
        if not MODEL_PATTERN.match(model):
            raise EmulatorError(
                f"The model '{model}' does not exist or you do not have access to it.",
                code="model_not_found",
                param=f"{path}.model",
            )
        if current is not None and model != current.get("model"):
            raise EmulatorError(
                "Cannot update a session's model after it has started.", code="invalid_value", param=f"{path}.model"
            )
        result["model"] = model
    if "instructions" in session:
        result["instructions"] = _string(session["instructions"], f"{path}.instructions")
    if "output_modalities" in session:
        result["output_modalities"] = _output_modalities(session["output_modalities"], f"{path}.output_modalities")
    if "audio" in session:
        result["audio"] = _merge_audio(session["audio"], result["audio"], f"{path}.audio")
    if "tools" in session:
        result["tools"] = _tools(session["tools"], f"{path}.tools")
    if "tool_choice" in session:
        result["tool_choice"] = _tool_choice(session["tool_choice"], f"{path}.tool_choice")
    if "max_output_tokens" in session:
        result["max_output_tokens"] = _max_output_tokens(session["max_output_tokens"], f"{path}.max_output_tokens")
    if "tracing" in session:
        result["tracing"] = _tracing(session["tracing"], f"{path}.tracing")
    if "truncation" in session:
        result["truncation"] = _truncation(session["truncation"], f"{path}.truncation")
    if "prompt" in session:
        result["prompt"] = _prompt(session["prompt"], f"{path}.prompt")
    if "include" in session:
        result["include"] = _include(session["include"], f"{path}.include")
    if "reasoning" in session:
        result["reasoning"] = _reasoning(session["reasoning"], f"{path}.reasoning")
    if "parallel_tool_calls" in session:
        result["parallel_tool_calls"] = (
            None if session["parallel_tool_calls"] is None
            else _bool(session["parallel_tool_calls"], f"{path}.parallel_tool_calls")
        )

    if (
        voice_locked
        and current is not None
        and result["audio"]["output"]["voice"] != current["audio"]["output"]["voice"]
    ):
        raise EmulatorError(
            "Cannot update a conversation's voice if assistant audio is present.",
            code="cannot_update_voice",
            param=f"{path}.audio.output.voice",
        )
    return result


def validate_client_secret_request(body: Any) -> tuple[int, dict[str, Any]]:
    """Validate a ``POST /realtime/client_secrets`` body; return (lifetime seconds, effective session)."""
    obj = _object(body, "body")
    for key in obj:
        if key not in ("expires_after", "session"):
            raise unknown_parameter(key)
    seconds = DEFAULT_EXPIRES_SECONDS
    if "expires_after" in obj:
        expires = _object(obj["expires_after"], "expires_after")
        _check_keys(expires, {"anchor", "seconds"}, "expires_after")
        if "anchor" not in expires:
            raise missing_parameter("expires_after.anchor")
        _choice(expires["anchor"], "expires_after.anchor", ("created_at",))
        if "seconds" in expires:
            seconds = _integer(
                expires["seconds"], "expires_after.seconds", minimum=MIN_EXPIRES_SECONDS, maximum=MAX_EXPIRES_SECONDS
            )
    session = validate_session(obj["session"]) if "session" in obj else default_session()
    return seconds, session


# --- client events --------------------------------------------------------------------------------


def check_client_event(event: Any) -> dict[str, Any]:
    """Check the envelope of a client event (type known, no unknown top-level keys)."""
    if not isinstance(event, dict):
        raise EmulatorError("Client events must be JSON objects.", code="invalid_json")
    if "type" not in event:
        raise missing_parameter("type")
    kind = event["type"]
    if not isinstance(kind, str):
        raise _invalid_type("type", "a string", kind)
    if kind not in CLIENT_EVENT_FIELDS:
        raise EmulatorError(
            f"Invalid value: '{kind}'. Supported values are: "
            + ", ".join(f"'{name}'" for name in CLIENT_EVENT_FIELDS)
            + ".",
            code="unknown_event",
            param="type",
        )
    if "event_id" in event and not isinstance(event["event_id"], str):
        raise _invalid_type("event_id", "a string", event["event_id"])
    allowed = CLIENT_EVENT_FIELDS[kind] | {"type", "event_id"}
    for key in event:
        if key not in allowed:
            raise unknown_parameter(key)
    return event


_CONTENT_TYPES: dict[str, dict[str, frozenset[str]]] = {
    "user": {
        "input_text": frozenset({"type", "text"}),
        "input_audio": frozenset({"type", "audio", "transcript"}),
        "input_image": frozenset({"type", "image_url", "detail"}),
    },
    "system": {"input_text": frozenset({"type", "text"})},
    "assistant": {
        "output_text": frozenset({"type", "text"}),
        "output_audio": frozenset({"type", "audio", "transcript"}),
    },
}


def validate_item(raw: Any, path: str = "item") -> dict[str, Any]:
    """Validate the item of ``conversation.item.create``; return a normalised copy (no id filled)."""
    item = _object(raw, path)
    if "type" not in item:
        raise missing_parameter(f"{path}.type")
    kind = _choice(item["type"], f"{path}.type", ("message", "function_call", "function_call_output"))
    common = {"id", "type", "object", "status"}
    if "id" in item:
        _string(item["id"], f"{path}.id", max_length=32)
    if "object" in item and item["object"] != "realtime.item":
        raise _invalid_value(f"{path}.object", item["object"], ("realtime.item",))
    if "status" in item:
        _choice(item["status"], f"{path}.status", ("completed", "incomplete", "in_progress"))
    result: dict[str, Any] = {"type": kind}
    if "id" in item:
        result["id"] = item["id"]
    if kind == "message":
        _check_keys(item, common | {"role", "content"}, path)
        if "role" not in item:
            raise missing_parameter(f"{path}.role")
        role = _choice(item["role"], f"{path}.role", ("user", "assistant", "system"))
        if "content" not in item:
            raise missing_parameter(f"{path}.content")
        if not isinstance(item["content"], list):
            raise _invalid_type(f"{path}.content", "an array", item["content"])
        allowed = _CONTENT_TYPES[role]
        content: list[dict[str, Any]] = []
        for index, part_raw in enumerate(item["content"]):
            part_path = f"{path}.content[{index}]"
            part = _object(part_raw, part_path)
            if "type" not in part:
                raise missing_parameter(f"{part_path}.type")
            part_type = _choice(part["type"], f"{part_path}.type", tuple(allowed))
            _check_keys(part, allowed[part_type], part_path)
            for key in ("text", "audio", "transcript", "image_url"):
                if key in part and part[key] is not None:
                    _string(part[key], f"{part_path}.{key}")
            content.append(copy.deepcopy(part))
        result.update({"role": role, "content": content})
    elif kind == "function_call_output":
        _check_keys(item, common | {"call_id", "output"}, path)
        for key in ("call_id", "output"):
            if key not in item:
                raise missing_parameter(f"{path}.{key}")
            result[key] = _string(item[key], f"{path}.{key}")
    else:
        _check_keys(item, common | {"call_id", "name", "arguments"}, path)
        for key in ("call_id", "name", "arguments"):
            if key not in item:
                raise missing_parameter(f"{path}.{key}")
            result[key] = _string(item[key], f"{path}.{key}")
    return result


RESPONSE_FIELDS = frozenset(
    {
        "conversation",
        "input",
        "instructions",
        "metadata",
        "output_modalities",
        "tools",
        "tool_choice",
        "max_output_tokens",
        "audio",
        "prompt",
    }
)


def validate_response_params(raw: Any, path: str = "response") -> dict[str, Any]:
    """Validate the optional ``response`` object of ``response.create``."""
    if raw is None:
        return {}
    params = _object(raw, path)
    for key in params:
        if key in BETA_RESPONSE_FIELDS:
            raise beta_shape(f"{path}.{key}", BETA_RESPONSE_FIELDS[key])
    _check_keys(params, RESPONSE_FIELDS, path)
    result: dict[str, Any] = {}
    if "conversation" in params:
        result["conversation"] = _choice(params["conversation"], f"{path}.conversation", ("auto", "none"))
    if "input" in params:
        if not isinstance(params["input"], list):
            raise _invalid_type(f"{path}.input", "an array", params["input"])
        result["input"] = [validate_item(entry, f"{path}.input[{i}]") for i, entry in enumerate(params["input"])]
    if "instructions" in params:
        result["instructions"] = _string(params["instructions"], f"{path}.instructions")
    if "metadata" in params and params["metadata"] is not None:
        metadata = _object(params["metadata"], f"{path}.metadata")
        if len(metadata) > 16:
            raise _invalid_value(f"{path}.metadata", "...", hint="At most 16 keys are allowed.")
        for key, value in metadata.items():
            _string(value, f"{path}.metadata.{key}", max_length=512)
        result["metadata"] = dict(metadata)
    if "output_modalities" in params:
        result["output_modalities"] = _output_modalities(params["output_modalities"], f"{path}.output_modalities")
    if "tools" in params:
        result["tools"] = _tools(params["tools"], f"{path}.tools")
    if "tool_choice" in params:
        result["tool_choice"] = _tool_choice(params["tool_choice"], f"{path}.tool_choice")
    if "max_output_tokens" in params:
        result["max_output_tokens"] = _max_output_tokens(params["max_output_tokens"], f"{path}.max_output_tokens")
    if "audio" in params:
        audio = _object(params["audio"], f"{path}.audio")
        _check_keys(audio, {"output"}, f"{path}.audio")
        output = _object(audio.get("output", {}), f"{path}.audio.output")
        _check_keys(output, {"format", "voice"}, f"{path}.audio.output")
        if "format" in output:
            _audio_format(output["format"], f"{path}.audio.output.format")
        if "voice" in output:
            _voice(output["voice"], f"{path}.audio.output.voice")
        result["audio"] = copy.deepcopy(audio)
    if "prompt" in params:
        result["prompt"] = _prompt(params["prompt"], f"{path}.prompt")
    return result
