"""Report a repeating condition once, then only how often it repeated.

One flooding connection used to write a warning per frame (584 lines in a few seconds) and a poisoned
session several lines a second: the log drowned what mattered and cost the disk and the event loop
more than the fault itself. A condition is now logged the first time it happens; later occurrences in
the next `window` seconds are only counted, and the count is logged once when the window ends
("... 583 more in the last 10 s"), by the next occurrence or by a timer on the running loop.

Plain asyncio and logging (no Django), so the realtime client uses it as well as the consumers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_WINDOW_SECONDS = 10.0
MAX_KEYS = 1024  # a bound on memory however many distinct conditions one holder sees


@dataclass
class _Pending:
    level: int
    msg: str
    args: tuple[Any, ...]
    since: float
    count: int = 0
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class TokenBucket:
    """At most `rate` events a second on average, `burst` at once: `take()` says whether one may pass."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.capacity, self.tokens, self.clock = rate, burst, burst, clock
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Throttle:
    """Says when a repeating condition should be reported: the first time, then once per window."""

    def __init__(self, window: float = DEFAULT_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def hit(self, key: str = "") -> int | None:
        """One occurrence of `key`. None: stay quiet. An int: report now; it says how many were kept quiet."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.window:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        if last is None and len(self._last) >= MAX_KEYS:
            self._last.pop(next(iter(self._last)))
        self._last[key] = now
        return self._suppressed.pop(key, 0)


class ThrottledLog:
    """A logger front that writes each condition (`key`) once per window, then a count of the repeats.

    ``log.warning("frame_too_large", "Session %s: frame of %d bytes refused", sid, size)``: the first
    call logs that line; the next calls within the window log nothing; when the window ends the line
    "<the last message> (N more in the last M s)" is logged once. `flush()` writes pending counts now
    (a consumer calls it when its connection ends).
    """

    def __init__(self, logger: logging.Logger, window: float = DEFAULT_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.window = window
        self.clock = clock
        self._opened: dict[str, float] = {}  # key -> when its window opened (the line that was logged)
        self._pending: dict[str, _Pending] = {}

    def debug(self, key: str, msg: str, *args: Any) -> None:
        self.log(logging.DEBUG, key, msg, *args)

    def info(self, key: str, msg: str, *args: Any) -> None:
        self.log(logging.INFO, key, msg, *args)

    def warning(self, key: str, msg: str, *args: Any) -> None:
        self.log(logging.WARNING, key, msg, *args)

    def log(self, level: int, key: str, msg: str, *args: Any) -> None:
        if not self.logger.isEnabledFor(level):
            return
        now = self.clock()
        opened = self._opened.get(key)
        if opened is not None and now - opened < self.window:
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = _Pending(level, msg, args, since=opened)
                pending.timer = self._schedule(key, opened + self.window - now)
            pending.level, pending.msg, pending.args = max(level, pending.level), msg, args
            pending.count += 1
            return
        pending = self._pending.get(key)
        if pending is not None:
            # The window ended while repeats were still coming: this one joins the count, which is logged
            # now and opens the next window, instead of a line of its own.
            pending.level, pending.msg, pending.args = max(level, pending.level), msg, args
            pending.count += 1
            self._emit_pending(key)
            return
        if opened is None and len(self._opened) >= MAX_KEYS:
            oldest = next(iter(self._opened))
            self._emit_pending(oldest)
            self._opened.pop(oldest)
        self._opened[key] = now
        self.logger.log(level, msg, *args, stacklevel=3)

    def flush(self) -> None:
        """Log every pending count now."""
        for key in list(self._pending):
            self._emit_pending(key)

    def _schedule(self, key: str, delay: float) -> asyncio.TimerHandle | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None  # no loop: the count goes out with the next occurrence or flush()
        return loop.call_later(max(delay, 0.0), self._emit_pending, key)

    def _emit_pending(self, key: str) -> None:
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        elapsed = max(self.clock() - pending.since, 0.0)
        # A new window opens with this summary: repeats right after it are counted again, not logged.
        self._opened[key] = self.clock()
        self.logger.log(pending.level, pending.msg + " (%d more in the last %.0f s)", *pending.args, pending.count,
                        elapsed)
