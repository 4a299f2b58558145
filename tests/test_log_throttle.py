"""A repeating condition is logged once, then as counts (voice/realtime/throttle.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from voice.realtime import boundedjson
from voice.realtime.throttle import Throttle, ThrottledLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.throttle"]


def test_a_thousand_repeats_make_one_line_then_one_count_per_window(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = ThrottledLog(logging.getLogger("test.throttle"), window=10, clock=clock)
    caplog.set_level(logging.INFO, logger="test.throttle")
    for i in range(1000):
        log.warning("too_large", "frame %d refused", i)
        clock.now += 0.025  # 40 a second, for 25 s
    log.flush()
    messages = _messages(caplog)
    assert messages[0] == "frame 0 refused"
    assert len(messages) <= 4, messages
    assert all("more in the last" in m for m in messages[1:])
    counted = sum(int(m.split("(")[1].split()[0]) for m in messages[1:])
    assert counted == 999  # every occurrence is accounted for


def test_different_conditions_are_each_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    log = ThrottledLog(logging.getLogger("test.throttle"), window=10, clock=Clock())
    caplog.set_level(logging.INFO, logger="test.throttle")
    for _ in range(50):
        log.info("a", "condition a")
        log.info("b", "condition b")
    assert _messages(caplog) == ["condition a", "condition b"]
    log.flush()
    assert _messages(caplog)[2:] == ["condition a (49 more in the last 0 s)", "condition b (49 more in the last 0 s)"]


def test_a_condition_seen_again_after_its_window_is_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = ThrottledLog(logging.getLogger("test.throttle"), window=10, clock=clock)
    caplog.set_level(logging.INFO, logger="test.throttle")
    log.info("a", "first")
    clock.now += 11
    log.info("a", "again")
    assert _messages(caplog) == ["first", "again"]


async def test_the_count_is_logged_when_the_window_ends_even_if_nothing_else_happens(
        caplog: pytest.LogCaptureFixture) -> None:
    log = ThrottledLog(logging.getLogger("test.throttle"), window=0.2)
    caplog.set_level(logging.INFO, logger="test.throttle")
    counted = asyncio.Event()

    def seen(record: logging.LogRecord) -> bool:
        if "more in the last" in record.getMessage():
            counted.set()
        return True

    caplog.handler.addFilter(seen)
    for _ in range(5):
        log.info("a", "flood")
    await asyncio.wait_for(counted.wait(), 5)  # the window's end logs the count by itself (a loop timer)
    assert _messages(caplog) == ["flood", "flood (4 more in the last 0 s)"]


def test_throttle_reports_first_then_once_per_window_with_the_quiet_count() -> None:
    clock = Clock()
    throttle = Throttle(5, clock=clock)
    assert throttle.hit() == 0
    assert [throttle.hit() for _ in range(3)] == [None, None, None]
    clock.now += 5
    assert throttle.hit() == 3


def test_nesting_depth_counts_only_brackets_outside_strings() -> None:
    assert boundedjson.nesting_depth('{"a": "[[[{{{\\"]]]", "b": [[1], {"c": []}]}') == 4
    assert boundedjson.nesting_depth("1") == 0
    assert boundedjson.loads("[" * 64 + "]" * 64) == eval("[" * 64 + "]" * 64)
    with pytest.raises(boundedjson.JSONTooDeepError, match="at most 64"):
        boundedjson.loads("[" * 65 + "]" * 65)
    with pytest.raises(ValueError):  # unbalanced and deep: still a ValueError, never a RecursionError
        boundedjson.loads("[" * 100_000)
    with pytest.raises(ValueError):
        boundedjson.loads('{"a": ' * 100_000)
