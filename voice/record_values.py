"""Typed, bounded values for the record: everything the Recorder stores passes through here first.

A relayed frame is only as trustworthy as the browser that relays it (relay mode), and even OpenAI's
own frames are parsed from JSON that may carry what no column can hold: a lone surrogate ("\\ud800"
is valid JSON, yet neither UTF-8 text nor PostgreSQL's jsonb can store it), a NUL (PostgreSQL text
and jsonb refuse it), ids longer than their column, negative or absurd numbers. One such value used
to make a whole batch unwritable. So values are made storable where they enter the Recorder, with
the functions below, and a value that had to be changed is noted in the record by the caller.

No Django here: these are plain functions over JSON-like values, testable on their own.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from typing import Any

from voice.realtime.events import USAGE_COUNTS, Usage

REPLACEMENT = "\ufffd"
# JSON deeper than this is kept as a marker: nothing the Realtime API sends nests past a dozen levels,
# and every walk over a payload (here, in json.dumps, in the admin) must stay far from the recursion limit.
MAX_JSON_DEPTH = 64
# Integers JSON may carry but no column or json.dumps wants: Python refuses to print ints of more
# than 4300 digits, and nothing real needs more than a 64-bit value.
MAX_JSON_INT_BITS = 256
POSITIVE_INT_MAX = 2**31 - 1  # PositiveIntegerField on PostgreSQL: integer, CHECK >= 0
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# One encoder for every scan: json.dumps with any non-default option builds a new one per call.
# Not ASCII-escaped, so that a lone surrogate shows as itself; NaN and Infinity raise (jsonb refuses them).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
_SECRET_PATTERN = re.compile(r"\b(?:ek_|sk-)[A-Za-z0-9_\-]{6,}")
REDACTED = "[redacted]"
# Keys whose string values are secrets whatever they look like (lower case).
SECRET_KEYS = frozenset({"api_key", "apikey", "authorization", "client_secret"})
# A key whose value is a secret under these parents: `ag2.init`'s `config.value`, a `client_secret.value`.
SECRET_VALUE_PARENTS = frozenset({"config", "client_secret"})
# Substrings (of the lower-cased JSON text) without which a frame holds nothing redact_secrets would take
# out. Substring tests run in C; a case-insensitive regex alternation cost ~30 us per frame here.
_SECRET_HINTS = ("ek_", "sk-", '"config"', '"client_secret"', '"authorization"', '"api_key"', '"apikey"')


def clean_str(value: str) -> str:
    """The string as valid Unicode without NUL: lone surrogates and NULs become U+FFFD."""
    if value.isascii():  # the common case, checked in C
        return value.replace("\x00", REPLACEMENT) if "\x00" in value else value
    return _UNSTORABLE.sub(REPLACEMENT, value)


def storable(frame: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The frame made storable, and its JSON text when the frame was storable as it came.

    The common case, a frame with nothing to clean, costs one json.dumps in C and one regex scan, and
    the frame itself is returned (never modified); the text is then reused for the size bound and the
    secret scan. Only a frame that fails the scan is walked and copied by `clean_json`.
    """
    try:
        text = _ENCODER.encode(frame)
    except (TypeError, ValueError, RecursionError):  # not JSON-native, non-finite, huge int, too deep
        return clean_json(frame), None
    # json.dumps escapes control characters even with ensure_ascii=False: a NUL shows as its escape (a
    # string holding a literal backslash-u0000 matches too, which only costs a walk); a lone surrogate
    # shows as itself, and only in text that is not ASCII.
    if "\\u0000" in text or (not text.isascii() and _SURROGATE.search(text)):
        return clean_json(frame), None
    return frame, text


def may_hold_secret(text: str, api_key: str = "") -> bool:
    """Whether a frame's JSON text might hold a secret: if not, `redact_secrets` need not walk it."""
    lowered = text.lower()
    return any(hint in lowered for hint in _SECRET_HINTS) or bool(api_key and api_key in text)


def clean_json(value: Any, _depth: int = 0) -> Any:
    """A storable copy of a JSON-like value: strings and keys cleaned, non-finite floats, huge ints and
    over-deep nesting replaced by markers, anything else (datetime, Decimal, UUID...) as its text.

    Always returns fresh containers: the caller's frame (which may still go to the browser) is untouched.
    """
    if isinstance(value, str):
        return clean_str(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= MAX_JSON_INT_BITS else f"<integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict | list | tuple):
        if _depth >= MAX_JSON_DEPTH:
            return f"<nested deeper than {MAX_JSON_DEPTH} levels>"
        if isinstance(value, dict):
            return {clean_str(k if isinstance(k, str) else str(k)): clean_json(v, _depth + 1) for k, v in value.items()}
        return [clean_json(v, _depth + 1) for v in value]
    return clean_str(str(value))


def bounded_text(value: Any, limit: int) -> str:
    """A storable string of at most `limit` characters ("" for what is not a string)."""
    if not isinstance(value, str):
        return ""
    return clean_str(value[:limit])


def bounded_id(value: Any, limit: int = 128) -> str:
    """An identifier that fits its column and stays unique: ids are keys (items are matched by item_id),
    so an over-long id keeps a prefix plus a digest of the whole instead of being cut into a collision."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return ""
    value = clean_str(value)
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
    return f"{value[: limit - 17]}~{digest}"


def bounded_choice(value: Any, choices: Iterable[str]) -> str:
    """One of `choices`, or "" for anything else."""
    return value if isinstance(value, str) and value in choices else ""


def bounded_int(value: Any, maximum: int = POSITIVE_INT_MAX) -> int | None:
    """A non-negative integer within `maximum`, or None. Integral floats (1400.0) count as integers;
    booleans, strings, negatives, NaN and out-of-range numbers do not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    if not isinstance(value, int) or value < 0 or value > maximum:
        return None
    return value


def redact_secrets(value: Any, api_key: str = "", _depth: int = 0, _parent: str = "") -> Any:
    """A copy of a JSON-like value with secrets replaced: the values of secret-named keys (and of `value`
    under `config` or `client_secret`, where the client secret travels whatever it looks like), and
    anything shaped like an OpenAI key or client secret (`sk-...`, `ek_...`) or equal to `api_key`.

    Returns the value itself when nothing is secret (a frame is walked, not copied, in the common case).
    """
    if isinstance(value, str):
        if ("ek_" in value or "sk-" in value) and _SECRET_PATTERN.search(value):
            value = _SECRET_PATTERN.sub(REDACTED, value)
        if api_key and api_key in value:
            value = value.replace(api_key, REDACTED)
        return value
    if _depth >= MAX_JSON_DEPTH:
        return value
    if isinstance(value, dict):
        changed = False
        out = {}
        for key, item in value.items():
            name = key.lower() if isinstance(key, str) else ""
            secret = name in SECRET_KEYS or (name == "value" and _parent in SECRET_VALUE_PARENTS)
            if secret and isinstance(item, str | dict) and item:
                new = REDACTED
            else:
                new = redact_secrets(item, api_key, _depth + 1, name)
            changed = changed or new is not item
            out[key] = new
        return out if changed else value
    if isinstance(value, list):
        items = [redact_secrets(v, api_key, _depth + 1, _parent) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


def storable_repr(value: Any, limit: int = 8000) -> str:
    """A bounded, ASCII-only rendering of anything: what a note keeps of a row the database refused.
    ASCII with escapes (no NUL, no surrogate) is storable in every column, whatever the row held."""
    try:
        text = ascii(value)
    except RecursionError:
        text = f"<{type(value).__name__} too deeply nested to show>"
    return text if len(text) <= limit else f"{text[:limit]}... <{len(text) - limit} more characters>"


# --- usage ---------------------------------------------------------------------------------------------

USAGE_FIELDS = tuple(column for column, _, _ in USAGE_COUNTS)


def usage_counts(usage: Usage | dict[str, Any] | None, max_tokens: int) -> tuple[dict[str, int], str]:
    """A `response.done` usage as ResponseUsage's columns, and what is implausible about it ("" when
    nothing). `usage` is the typed `Usage` the event was parsed with (usage is parsed once, in
    voice.realtime.events); a plain dict is parsed the same way first. Missing counts are 0 (OpenAI omits
    some); a count that is not a non-negative integer (the parser's `problems`), exceeds `max_tokens`, or
    details that add up to more than their total are implausible: the caller refuses the whole usage
    rather than bill a part of it.
    """
    if not isinstance(usage, Usage):
        usage = Usage.model_validate({} if usage is None else usage)
    problems = list(usage.problems)
    counts = usage.counts()
    for column, path, name in USAGE_COUNTS:
        if counts[column] > max_tokens:
            label = f"{path.rpartition('.')[2]}.{name}" if path else name
            problems.append(f"{label} is {counts[column]}: not a count between 0 and {max_tokens}")
            counts[column] = 0
    if not problems:
        # OpenAI's figures add up exactly; a little slack keeps a rounding or a new kind of token
        # from refusing real usage, while a forged breakdown (what the cost is computed from) is caught.
        def exceeds(parts: int, whole: int) -> bool:
            return parts > whole + max(16, whole // 10)

        c = counts
        total, summed = c["total_tokens"], c["input_tokens"] + c["output_tokens"]
        if total and (exceeds(summed, total) or exceeds(total, summed)):
            problems.append("input_tokens + output_tokens differ from total_tokens")
        if exceeds(c["input_text_tokens"] + c["input_audio_tokens"] + c["input_image_tokens"], c["input_tokens"]):
            problems.append("input token details add up to more than input_tokens")
        if exceeds(c["cached_tokens"], c["input_tokens"]):
            problems.append("cached_tokens exceed input_tokens")
        if exceeds(c["cached_text_tokens"] + c["cached_audio_tokens"], c["cached_tokens"]):
            problems.append("cached token details add up to more than cached_tokens")
        if exceeds(c["output_text_tokens"] + c["output_audio_tokens"], c["output_tokens"]):
            problems.append("output token details add up to more than output_tokens")
    return counts, "; ".join(problems)
