"""The Recorder assembles the whole record from raw frames, batches its writes and loses nothing."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.db import OperationalError

from realtime_emulator import streams
from tests.record_feed import relay, sent
from tests.ws_helpers import wait_for
from voice import broadcast, recording
from voice.broadcast import STAFF_GROUP, Broadcaster, session_group
from voice.models import ResponseUsage, SessionEvent, ToolCall, VoiceConfig, VoiceSession
from voice.recording import Recorder

pytestmark = pytest.mark.django_db(transaction=True)

USAGE = {
    "total_tokens": 1300, "input_tokens": 1000, "output_tokens": 300,
    "input_token_details": {"text_tokens": 400, "audio_tokens": 600, "image_tokens": 0, "cached_tokens": 200,
                            "cached_tokens_details": {"text_tokens": 200, "audio_tokens": 0}},
    "output_token_details": {"text_tokens": 100, "audio_tokens": 200},
}


def conversation() -> list[dict[str, Any]]:
    """A GA event stream in which the user's transcription arrives after the reply (as it may)."""
    return streams.numbered([
        streams.session_created("sess_1"),
        *streams.user_speech("item_user1", previous=None, start_ms=100, end_ms=1400),
        *streams.assistant_reply("resp_1", "item_asst1", ("It is ", "noon in UTC."), previous="item_user1",
                                 usage=USAGE),
        *streams.transcription("item_user1", ("What time ", "is it?"), usage=None),
    ], "e")


FOLDED = 4  # the transcript deltas above


@pytest.fixture
def session(owner: User) -> VoiceSession:
    config = VoiceConfig.objects.get(slug="default")
    return VoiceSession.objects.create(user=owner, config=config, model="gpt-realtime")


def _recorder(session: VoiceSession, **kwargs: Any) -> Recorder:
    return Recorder(str(session.pk), model="gpt-realtime", **kwargs)


@database_sync_to_async
def _rows(session: VoiceSession) -> dict[str, Any]:
    session.refresh_from_db()
    return {
        "events": list(SessionEvent.objects.filter(session=session).order_by("seq").values_list("seq", "type")),
        "items": [(i.item_id, i.role, i.text, i.status) for i in session.ordered_transcript()],
        "tools": list(ToolCall.objects.filter(session=session).values("call_id", "name", "arguments", "output",
                                                                          "status", "duration_ms")),
        "usages": list(ResponseUsage.objects.filter(session=session).values()),
        "session": session,
    }


async def test_a_conversation_becomes_ordered_transcript_items_with_usage_and_cost(session: VoiceSession) -> None:
    recorder = _recorder(session)
    for frame in conversation():
        relay(recorder, frame)
    await recorder.close()
    rows = await _rows(session)
    assert rows["items"] == [
        ("item_user1", "user", "What time is it?", "completed"),
        ("item_asst1", "assistant", "It is noon in UTC.", "completed"),
    ]
    usage = rows["usages"][0]
    assert (usage["response_id"], usage["input_audio_tokens"], usage["cached_text_tokens"],
            usage["output_audio_tokens"]) == ("resp_1", 600, 200, 200)
    # gpt-realtime: text in 4, cached 0.40, out 16; audio in 32, out 64 (USD per million tokens)
    expected = (200 * Decimal("4") + 200 * Decimal("0.40") + 600 * Decimal("32") + 100 * Decimal("16")
                + 200 * Decimal("64")) / Decimal(1_000_000)
    assert usage["cost_usd"] == expected.quantize(Decimal("0.000001"))
    stored = rows["session"]
    assert (stored.turns, stored.input_tokens, stored.output_tokens, stored.total_tokens) == (1, 1000, 300, 1300)
    assert stored.cost_usd == usage["cost_usd"]
    assert stored.openai_session_id == "sess_1"


async def test_every_frame_but_transcript_deltas_is_logged_with_a_gapless_seq(session: VoiceSession) -> None:
    recorder = _recorder(session)
    frames = conversation()
    for frame in frames:
        relay(recorder, frame)
    sent(recorder, {"type": "response.create"})
    await recorder.close()
    events = (await _rows(session))["events"]
    assert [seq for seq, _ in events] == list(range(1, len(frames) - FOLDED + 2))
    assert not any(kind.endswith("transcript.delta") or kind.endswith("transcription.delta") for _, kind in events)
    assert events[-1] == (len(frames) - FOLDED + 1, "response.create")


async def test_a_tool_call_is_recorded_with_arguments_output_status_and_duration(session: VoiceSession) -> None:
    recorder = _recorder(session)
    relay(recorder, {
        "type": "response.function_call_arguments.done", "event_id": "e1", "response_id": "resp_2",
        "item_id": "item_fc", "output_index": 0, "call_id": "call_9", "name": "current_time",
        "arguments": '{"timezone": "Europe/Paris"}'})
    sent(recorder, {"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "call_9", "output": '{"time": "12:00"}'}})
    recorder.tool_finished("call_9", "current_time", '{"time": "12:00"}', "succeeded", 12)
    await recorder.close()
    tools = (await _rows(session))["tools"]
    assert tools == [{"call_id": "call_9", "name": "current_time", "arguments": {"timezone": "Europe/Paris"},
                      "output": '{"time": "12:00"}', "status": "succeeded", "duration_ms": 12}]


async def test_an_error_answer_marks_the_tool_call_failed_and_bad_arguments_are_kept(session: VoiceSession) -> None:
    recorder = _recorder(session)
    relay(recorder, {"type": "response.function_call_arguments.done", "call_id": "call_x",
                                     "name": "calculator", "arguments": "{not json"})
    sent(recorder, {"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "call_x", "output": '{"error": "invalid arguments"}'}})
    await recorder.close()
    tool = (await _rows(session))["tools"][0]
    assert tool["status"] == "failed"
    assert tool["arguments"] == {"_unparsed": "{not json"}


async def test_a_truncated_reply_keeps_what_was_spoken_and_stays_truncated(session: VoiceSession) -> None:
    recorder = _recorder(session)
    reply = {"id": "item_a", "type": "message", "role": "assistant", "content": []}
    relay(recorder, {"type": "conversation.item.added", "previous_item_id": None, "item": reply})
    relay(recorder, {"type": "response.output_audio_transcript.delta", "item_id": "item_a",
                                     "delta": "Once upon a time"})
    relay(recorder, {"type": "conversation.item.truncated", "item_id": "item_a",
                                     "content_index": 0, "audio_end_ms": 900})
    relay(recorder, {"type": "response.output_audio_transcript.done", "item_id": "item_a",
                                     "transcript": "Once upon a time there was a very long story"})
    relay(recorder, {"type": "conversation.item.done", "item": {**reply, "status": "completed"}})
    await recorder.close()
    assert (await _rows(session))["items"] == [("item_a", "assistant", "Once upon a time", "truncated")]


async def test_odd_frames_are_logged_and_do_not_stop_the_recording(session: VoiceSession) -> None:
    recorder = _recorder(session)
    for frame in [{"no": "type"}, {"type": "conversation.item.input_audio_transcription.completed"},
                  {"type": "response.done", "response": "not an object"}, {"type": "x" * 300},
                  {"type": "response.output_audio_transcript.delta", "delta": 5},
                  {"type": "input_audio_buffer.delta", "delta": "A" * 400_000}]:
        relay(recorder, frame)
    for frame in conversation():
        relay(recorder, frame)
    await recorder.close()
    rows = await _rows(session)
    assert len(rows["events"]) == 6 + len(conversation()) - FOLDED
    assert rows["items"][1][2] == "It is noon in UTC."
    huge = await database_sync_to_async(SessionEvent.objects.get)(session=session, type="input_audio_buffer.delta")
    assert "not stored" in huge.payload["delta"]


async def test_writes_are_batched_not_one_per_event(session: VoiceSession, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = _recorder(session, batch_size=100, flush_seconds=60)
    writes = []
    original = recording.write_batches
    monkeypatch.setattr(recording, "write_batches",
                        lambda pairs: writes.append(sum(len(b.events) for _, b in pairs)) or original(pairs))
    recorder.start()
    for i in range(450):
        relay(recorder, {"type": "rate_limits.updated", "event_id": f"e{i}", "rate_limits": []})
        if i % 50 == 0:
            await asyncio.sleep(0)  # let the flush task run, as a live session would
    await recorder.close()
    assert sum(writes) == 450
    assert len(writes) <= 10
    assert len((await _rows(session))["events"]) == 450


async def test_a_failed_write_is_retried_and_its_batch_kept(session: VoiceSession,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = _recorder(session, max_retries=2)
    failures = {"left": 3}
    original = recording._insert_events  # where the event rows are written, on either backend

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("database is locked")
        return original(*args, **kwargs)

    monkeypatch.setattr(recording, "_insert_events", flaky)
    for frame in conversation():
        relay(recorder, frame)
    await recorder.flush()  # two attempts fail: the batch is kept
    assert recorder.failed_flushes == 1
    assert (await _rows(session))["events"] == []
    sent(recorder, {"type": "response.create"})
    await recorder.close()  # one more failure, then success
    rows = await _rows(session)
    assert len(rows["events"]) == len(conversation()) - FOLDED + 1
    assert [seq for seq, _ in rows["events"]] == list(range(1, len(rows["events"]) + 1))
    assert rows["items"][0][2] == "What time is it?"
    assert rows["session"].total_tokens == 1300


async def test_committed_items_tool_calls_and_usage_reach_staff_and_deltas_reach_the_session_group(
    session: VoiceSession,
) -> None:
    layer = get_channel_layer()
    staff = await layer.new_channel()
    watcher = await layer.new_channel()
    await layer.group_add(STAFF_GROUP, staff)
    await layer.group_add(session_group(str(session.pk)), watcher)
    broadcaster = Broadcaster(str(session.pk))
    await broadcast.refresh_watches()  # a watched session streams everything
    recorder = _recorder(session, broadcaster=broadcaster)
    for frame in conversation():
        relay(recorder, frame)
    await recorder.close()
    await broadcaster.close()

    async def drain(channel: str) -> list[dict[str, Any]]:
        got = []
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), 0.2)
            except TimeoutError:
                return got
            got.extend(message["payloads"] if message["type"] == "dashboard.batch" else [message["payload"]])

    staff_types = [p["type"] for p in await drain(staff)]
    assert "delta" not in staff_types and "event" not in staff_types
    assert staff_types.count("item") == 2 and "usage" in staff_types
    watched = await drain(watcher)
    deltas = "".join(p["delta"] for p in watched if p["type"] == "delta" and p["role"] == "assistant")
    assert deltas == "It is noon in UTC."
    assert any(p["type"] == "event" for p in watched)
    assert all(p["session_id"] == str(session.pk) for p in watched)


class BrokenLayer:
    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        raise ConnectionError("redis is down")


async def test_a_broken_channel_layer_does_not_stop_the_recording(session: VoiceSession) -> None:
    broadcaster = Broadcaster(str(session.pk))
    broadcaster.layer = BrokenLayer()
    recorder = _recorder(session, broadcaster=broadcaster)
    for frame in conversation():
        relay(recorder, frame)
    await recorder.close()
    await broadcaster.close()
    assert broadcaster.failed > 0 and broadcaster.sent == 0
    assert len((await _rows(session))["items"]) == 2


class CollectingBroadcaster:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def to_session(self, payload: dict[str, Any]) -> None:
        self.sent.append(payload)

    def to_staff(self, payload: dict[str, Any]) -> None:
        self.sent.append(payload)

    def to_both(self, payload: dict[str, Any]) -> None:
        self.sent.append(payload)


async def test_an_item_finishing_again_during_a_write_is_published_with_its_final_text(
    session: VoiceSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    broadcaster = CollectingBroadcaster()
    recorder = _recorder(session, broadcaster=broadcaster)  # type: ignore[arg-type]
    original = recording.write_batches
    writing, written = threading.Event(), threading.Event()

    def slow_write(pairs: Any) -> Any:  # in the ORM thread
        writing.set()
        written.wait(5)  # the transcription lands while this batch is being written
        return original(pairs)

    monkeypatch.setattr(recording, "write_batches", slow_write)
    user_item = {"id": "item_late", "type": "message", "role": "user", "status": "completed",
                 "content": [{"type": "input_audio", "transcript": None}]}
    relay(recorder, {"type": "conversation.item.done", "previous_item_id": None, "item": user_item})
    first = asyncio.create_task(recorder.flush())
    assert await asyncio.to_thread(writing.wait, 5)
    relay(recorder, {"type": "conversation.item.input_audio_transcription.completed",
                                     "item_id": "item_late", "transcript": "Late but final"})
    written.set()
    await first
    await recorder.close()
    published = [p["item"]["text"] for p in broadcaster.sent if p["type"] == "item"]
    assert published[-1] == "Late but final"


@pytest.fixture
def many_sessions(owner: User) -> list[VoiceSession]:
    config = VoiceConfig.objects.get(slug="default")
    return [VoiceSession.objects.create(user=owner, config=config, model="gpt-realtime") for _ in range(12)]


async def test_live_sessions_are_written_together_in_one_transaction(many_sessions: list[VoiceSession],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    original = recording.write_batches
    monkeypatch.setattr(recording, "write_batches", lambda pairs: calls.append(len(pairs)) or original(pairs))
    recorders = [_recorder(s, flush_seconds=0.1) for s in many_sessions]
    for recorder in recorders:
        recorder.start()
    for frame in conversation():
        for recorder in recorders:
            relay(recorder, frame)
    async def written() -> bool:  # the process's writer runs at least once on its own
        return bool(calls)

    assert await wait_for(written)
    assert max(calls) == len(recorders)  # one write covered every session
    for recorder in recorders:
        await recorder.close()
    for session in many_sessions:
        rows = await _rows(session)
        assert len(rows["events"]) == len(conversation()) - FOLDED
        assert [seq for seq, _ in rows["events"]] == list(range(1, len(rows["events"]) + 1))
        assert [item[2] for item in rows["items"]] == ["What time is it?", "It is noon in UTC."]
        assert rows["session"].total_tokens == 1300 and rows["session"].cost_usd > 0
    assert len(calls) <= 3


async def test_one_sessions_failing_batch_does_not_hold_back_the_others(many_sessions: list[VoiceSession],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    bad = str(many_sessions[0].pk)
    broken = {"on": True}
    original = recording._insert_events

    def refuse_bad_session(events: Any) -> Any:
        if broken["on"] and any(str(session_id) == bad for session_id, _ in events):
            raise OperationalError("value too long for type character varying(100)")
        return original(events)

    monkeypatch.setattr(recording, "_insert_events", refuse_bad_session)
    recorders = [_recorder(s, flush_seconds=0.05, max_retries=1) for s in many_sessions]
    for recorder in recorders:
        recorder.start()
        for frame in conversation():
            relay(recorder, frame)
    async def the_others_written() -> bool:  # alone, after the combined write failed
        counts = [len((await _rows(session))["events"]) for session in many_sessions[1:]]
        return counts == [len(conversation()) - FOLDED] * len(counts)

    assert await wait_for(the_others_written)
    assert (await _rows(many_sessions[0]))["events"] == []
    assert recorders[0].failed_flushes >= 1  # and its batch is kept: written below once the fault is gone
    broken["on"] = False
    for recorder in recorders:
        await recorder.close()
    assert len((await _rows(many_sessions[0]))["events"]) == len(conversation()) - FOLDED


async def test_the_writer_task_exists_only_while_a_recorder_is_live(session: VoiceSession) -> None:
    recorder = _recorder(session, flush_seconds=0.05)
    recorder.start()
    writer = recording._writer_for_loop()
    assert writer.task is not None
    relay(recorder, {"type": "rate_limits.updated", "rate_limits": []})
    await recorder.close()
    await asyncio.sleep(0.1)
    assert writer.task is None and not writer.recorders
