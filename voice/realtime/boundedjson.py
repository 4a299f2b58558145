"""JSON decoding with a bound on nesting depth, for text that comes from outside the server.

The standard library's decoder recurses once per nested array or object. A frame of 100,000 nested
lists (about 200 KB, well inside the frame size limit) makes it raise ``RecursionError``, which is not a
``ValueError``: it escaped the consumers' "malformed frame" handling and closed the socket with 1011.
Nothing the Realtime API or the browser sends legitimately nests deeper than a dozen levels, so text is
refused before parsing when it nests deeper than ``MAX_DEPTH``.

The depth is found without a parser: string literals are removed (they may hold brackets), the
brackets left become +1/-1 steps, and the largest running sum is the depth. All of it runs in C
(``re``, ``bytes.translate``, ``itertools.accumulate``), about 15 ms for the worst 256 KB frame, and only
for text with more opening brackets than the bound at all, which no ordinary event has. For valid JSON
the count is exact; invalid JSON is refused by the decoder anyway.
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any

MAX_DEPTH = 64

# A JSON string literal: a quote, then runs of ordinary characters or backslash escapes, then a quote.
# Written "unrolled" so that no input makes it backtrack more than once per character.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Brackets become the signed bytes +1 / -1; every other byte is deleted.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_A_BRACKET = bytes(c for c in range(256) if c not in b"[]{}")


class JSONTooDeepError(ValueError):
    """The text nests arrays/objects deeper than allowed. A ``ValueError``, like any undecodable JSON."""

    def __init__(self, depth: int, max_depth: int) -> None:
        self.depth, self.max_depth = depth, max_depth
        # `msg` as on json.JSONDecodeError, so callers can report either the same way.
        self.msg = f"it nests {depth} levels deep; at most {max_depth} are accepted"
        super().__init__(self.msg)


def nesting_depth(text: str) -> int:
    """How deeply the arrays and objects of JSON ``text`` nest (0 for a bare scalar)."""
    steps = _STRING.sub(b"", text.encode("utf-8", "surrogatepass")).translate(_STEPS, _NOT_A_BRACKET)
    return max(accumulate(array("b", steps)), default=0)


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that raises ``JSONTooDeepError`` (a ``ValueError``) for text nested too deeply."""
    if isinstance(text, bytes | bytearray):
        text = text.decode("utf-8", "replace")
    # Cheap test first: text with few opening brackets cannot nest deeply, whatever its strings hold.
    if text.count("[") + text.count("{") > max_depth:
        depth = nesting_depth(text)
        if depth > max_depth:
            raise JSONTooDeepError(depth, max_depth)
    try:
        return json.loads(text)
    except RecursionError:
        # Not reachable with a sane bound; kept so that no input can ever escape as a RecursionError.
        raise JSONTooDeepError(max_depth + 1, max_depth) from None
