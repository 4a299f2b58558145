"""One interpreter of the protocol (issue 11, item 3).

OpenAI's frames are logged once, where they are heard, with a direction (from or to OpenAI) and an
origin (sideband or browser); the record is derived from the typed events of voice/realtime/events.py
only. So the same conversation makes the same record whichever source fed it: relayed by a browser
through the consumer, or heard on a sideband (taps and typed events, as OpenAIRealtimeSidebandClient
produces them).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from realtime_emulator import streams
from tests.record_feed import relay
from tests.test_recording import USAGE, conversation
from tests.ws_helpers import disconnect_peers, open_peer, started, wait_for  # noqa: F401  (autouse fixture)
from voice import sessions
from voice.models import ResponseUsage, SessionEvent, ToolCall, TranscriptItem, VoiceConfig, VoiceSession
from voice.realtime.client import ClientEventsMixin, FrameTap, RawFrame, RealtimeClientBase
from voice.realtime.events import ConversationItemDone, ResponseDone, parse_event, parse_frame
from voice.recording import Recorder, RecorderObserver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("relay_mode")]

ARGUMENTS = json.dumps({"expression": "6 * 7"})


def tool_turn() -> list[dict[str, Any]]:
    """The model calls the calculator (the server runs it and answers with a client event)."""
    return streams.numbered(streams.tool_call("resp_2", "item_fc1", "call_1", "calculator", ARGUMENTS,
                                              previous="item_asst1", deltas=(ARGUMENTS[:9],)), "t")


def after_the_answer() -> list[dict[str, Any]]:
    """What OpenAI says once the server answered: the output item (announced with beta's name here),
    a reply cut short by the user, and the server's copy of the first item (asked for)."""
    output = {"id": "item_out1", "type": "function_call_output", "call_id": "call_1", "output": '{"result": 42}'}
    return streams.numbered([
        {"type": "conversation.item.created", "event_id": "", "previous_item_id": "item_fc1", "item": output},
        streams.response_created("resp_3"),
        streams.item_added(streams.message("item_asst2", "assistant", status="in_progress"), "item_out1"),
        streams.transcript_delta("resp_3", "item_asst2", "It is forty"),
        streams.speech_started("item_user2", 5000),
        {"type": "conversation.item.truncated", "event_id": "", "item_id": "item_asst2", "content_index": 0,
         "audio_end_ms": 700},
        streams.response_done("resp_3", [], USAGE, status="cancelled"),
        {"type": "conversation.item.retrieved", "event_id": "", "item": streams.user_audio("item_user1",
                                                                                            "What time is it?")},
    ], "a")


class SidebandLike(ClientEventsMixin, RealtimeClientBase):
    """What OpenAIRealtimeSidebandClient does with the wire, without a socket: every frame is tapped
    (from_openai as read, to_openai once written; origin sideband) and parsed by the one parser."""

    def __init__(self, on_frame: FrameTap) -> None:
        super().__init__()
        self._active_responses: set[str] = set()
        self.on_frame = on_frame
        self.sent: list[dict[str, Any]] = []
        self.answered = asyncio.Event()  # a conversation.item.create went out (the tool's output)

    @property
    def logger(self) -> logging.Logger:
        return logging.getLogger(__name__)

    @asynccontextmanager
    async def connect(self) -> AsyncGenerator[None, None]:
        yield

    async def hear(self, frame: dict[str, Any]) -> None:
        text = json.dumps(frame, ensure_ascii=False)
        self.on_frame(RawFrame(direction="from_openai", origin="sideband", text=text))
        event = parse_frame(text)
        self._track_response(event)
        await self.add_event(event)

    async def _send_client_event(self, event: dict[str, Any]) -> None:
        self.sent.append(event)
        if event["type"] == "conversation.item.create":
            self.answered.set()
        self.on_frame(RawFrame(direction="to_openai", origin="sideband", text=json.dumps(event, ensure_ascii=False)))

    async def send_audio(self, audio: str) -> None:
        await self.queue_input_audio_buffer_delta(audio)

    def session_init_data(self) -> list[dict[str, Any]]:
        return []


@database_sync_to_async
def _record(session_id: str) -> dict[str, Any]:
    session = VoiceSession.objects.get(pk=session_id)
    events = list(SessionEvent.objects.filter(session_id=session_id).order_by("seq")
                  .values("direction", "origin", "type", "payload"))
    return {
        "events": events,
        "items": list(TranscriptItem.objects.filter(session_id=session_id).order_by("item_id").values(
            "item_id", "previous_item_id", "response_id", "role", "kind", "name", "text", "text_truncated", "status",
            "audio_start_ms", "audio_end_ms")),
        "tools": list(ToolCall.objects.filter(session_id=session_id).values(
            "call_id", "item_id", "name", "arguments", "output", "status")),
        "usages": list(ResponseUsage.objects.filter(session_id=session_id).order_by("response_id").values(
            "response_id", "status", "total_tokens", "input_tokens", "output_tokens", "input_audio_tokens",
            "cached_text_tokens", "output_audio_tokens", "cost_usd")),
        "session": {k: getattr(session, k) for k in ("turns", "input_tokens", "output_tokens", "total_tokens",
                                                      "cost_usd", "openai_session_id")},
    }


async def _relayed_through_the_consumer(owner: User) -> str:
    peer, init = await started(owner)
    await peer.send({"type": "ag2.ready", "call_id": "rtc_relay"})
    for frame in conversation() + tool_turn():
        await peer.send(frame)
    answer = await peer.until("conversation.item.create")  # the tool's output, for the data channel
    assert answer["item"]["call_id"] == "call_1"
    for frame in after_the_answer():
        await peer.send(frame)
    await peer.send({"type": "ag2.hangup"})  # at once: what was relayed before it still reaches the record
    assert await peer.closed() == 1000
    session_id = init["session_id"]

    async def ended() -> bool:
        return (await database_sync_to_async(VoiceSession.objects.get)(pk=session_id)).status == "ended"

    assert await wait_for(ended)
    return session_id


async def _heard_on_a_sideband(owner: User) -> str:
    config = await database_sync_to_async(VoiceConfig.objects.get)(slug="default")
    session = await database_sync_to_async(VoiceSession.objects.create)(
        user=owner, config=config, config_name=config.name, model=config.model,
        session_payload=config.to_session_payload())
    session = await database_sync_to_async(VoiceSession.objects.select_related("user", "config").get)(pk=session.pk)
    recorder = Recorder(str(session.pk), model=session.model)
    recorder.start()
    client = SidebandLike(recorder.tap)  # as the live session wires the sideband's on_frame
    agent = sessions.build_agent(session, websocket=None, recorder=recorder)
    agent.client = client  # the same agent, tools and observers; only the source differs
    run = asyncio.create_task(agent.run())
    for frame in conversation() + tool_turn():
        await client.hear(frame)
    await asyncio.wait_for(client.answered.wait(), 5)
    for frame in after_the_answer():
        await client.hear(frame)
    await client.add_event(None)  # the sideband's stream ends after what it heard
    await asyncio.wait_for(run, 5)
    await recorder.close()
    return str(session.pk)


def _openai_rows(events: list[dict[str, Any]], direction: str) -> list[tuple[str, Any]]:
    return [(e["type"], e["payload"]) for e in events if e["direction"] == direction]


async def test_the_same_conversation_makes_the_same_record_relayed_or_heard_on_a_sideband(
    owner: User, emulator: str, relay_mode: None,
) -> None:
    relayed = await _record(await _relayed_through_the_consumer(owner))
    heard = await _record(await _heard_on_a_sideband(owner))

    # Logged once each, in wire order, deltas folded (no row), modulo where they were heard.
    frames = conversation() + tool_turn() + after_the_answer()
    logged = [(f["type"], f) for f in frames if not f["type"].endswith("transcript.delta")
              and not f["type"].endswith("transcription.delta")]
    assert _openai_rows(relayed["events"], "from_openai") == logged
    assert _openai_rows(heard["events"], "from_openai") == logged
    assert _openai_rows(relayed["events"], "to_openai") == _openai_rows(heard["events"], "to_openai")
    assert [t for t, _ in _openai_rows(heard["events"], "to_openai")] == [
        "session.update", "conversation.item.create", "response.create"]
    for record, origin in ((relayed, "browser"), (heard, "sideband")):
        assert {e["origin"] for e in record["events"] if e["direction"] in ("from_openai", "to_openai")} == {origin}
    # The relay's own frames, and only there: the browser's ag2.* frames.
    assert [(e["direction"], e["origin"], e["type"]) for e in relayed["events"]
            if e["direction"] in ("from_browser", "to_browser")] == [
        ("to_browser", "browser", "ag2.init"), ("from_browser", "browser", "ag2.ready"),
        ("from_browser", "browser", "ag2.hangup"), ("to_browser", "browser", "ag2.close")]
    assert not [e for e in heard["events"] if e["direction"] in ("from_browser", "to_browser")]

    # And the same record.
    assert relayed["items"] == heard["items"]
    assert relayed["tools"] == heard["tools"]
    assert relayed["usages"] == heard["usages"]
    assert relayed["session"] == heard["session"]
    items = {i["item_id"]: i for i in heard["items"]}
    assert (items["item_user1"]["text"], items["item_user1"]["status"]) == ("What time is it?", "completed")
    assert (items["item_asst2"]["text"], items["item_asst2"]["status"], items["item_asst2"]["audio_end_ms"]) == (
        "It is forty", "truncated", 700)
    assert (items["item_out1"]["kind"], items["item_out1"]["text"], items["item_out1"]["status"]) == (
        "function_call_output", '{"result": 42}', "completed")
    assert items["item_user2"]["audio_start_ms"] == 5000
    (tool,) = heard["tools"]
    assert (tool["name"], tool["arguments"], tool["status"]) == ("calculator", {"expression": "6 * 7"}, "succeeded")
    assert json.loads(tool["output"]) == {"expression": "6 * 7", "result": 42}
    assert [u["response_id"] for u in heard["usages"]] == ["resp_1", "resp_2", "resp_3"]
    assert heard["session"]["total_tokens"] == 1300 + 90 + 1300 and heard["session"]["openai_session_id"] == "sess_1"


# --- the divergences the Recorder's own reading had -------------------------------------------------------

@pytest.fixture
def session(owner: User) -> VoiceSession:
    config = VoiceConfig.objects.get(slug="default")
    return VoiceSession.objects.create(user=owner, config=config, model="gpt-realtime")


async def test_beta_item_created_is_recorded_exactly_as_ga_item_done(session: VoiceSession, owner: User) -> None:
    item = {"id": "item_u", "type": "message", "role": "user", "status": "completed",
            "content": [{"type": "input_text", "text": "hello"}]}
    other = await database_sync_to_async(VoiceSession.objects.create)(user=owner, config=session.config,
                                                                       model="gpt-realtime")
    rows = []
    for target, kind in ((session, "conversation.item.created"), (other, "conversation.item.done")):
        recorder = Recorder(str(target.pk), model="gpt-realtime")
        event = parse_event({"type": kind, "previous_item_id": "item_0", "item": item})
        assert isinstance(event, ConversationItemDone)  # the same class: PROTOCOL.md's beta alias
        relay(recorder, {"type": kind, "previous_item_id": "item_0", "item": item})
        await recorder.close()
        record = await _record(str(target.pk))
        rows.append((record["items"], [e["payload"]["type"] for e in record["events"]]))
    assert rows[0][0] == rows[1][0]
    assert rows[0][0][0]["status"] == "completed" and rows[0][0][0]["previous_item_id"] == "item_0"
    assert rows[0][1] == ["conversation.item.created"] and rows[1][1] == ["conversation.item.done"]  # logged as heard


async def test_a_retrieved_item_tells_what_it_holds_and_finishes_nothing(session: VoiceSession) -> None:
    """GA: conversation.item.retrieved is the server's copy of an item, sent when asked for: no
    previous_item_id, no completion. The Recorder used to take it for a final notice (completed)."""
    recorder = Recorder(str(session.pk), model="gpt-realtime")
    reply = {"id": "item_a", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
    relay(recorder, {"type": "conversation.item.added", "previous_item_id": "item_0", "item": reply})
    relay(recorder, {"type": "conversation.item.retrieved", "item": {
        **reply, "content": [{"type": "output_audio", "transcript": "So far"}]}})
    await recorder.close()
    (item,) = (await _record(str(session.pk)))["items"]
    assert (item["text"], item["status"], item["previous_item_id"]) == ("So far", "in_progress", "item_0")


def test_usage_is_parsed_once_by_the_typed_event_with_the_records_rules() -> None:
    """The typed Usage used to take "300" for 300 and -5 for a count, while the Recorder, parsing the
    raw usage again, refused them: two readings of one value. Now there is one, in events.py."""
    for bad in ("300", -5, 1.5, True, [1], 2**60):
        usage = {**USAGE, "output_tokens": bad}
        event = parse_event({"type": "response.done", "response": {"id": "r", "usage": usage}})
        assert isinstance(event, ResponseDone) and event.usage is not None
        assert event.usage.output_tokens == 0 and event.usage.problems, bad
    good = parse_event({"type": "response.done", "response": {"id": "r", "usage": USAGE}})
    assert isinstance(good, ResponseDone) and good.usage is not None and not good.usage.problems
    assert good.usage.counts()["cached_text_tokens"] == 200


async def test_the_recorder_takes_usage_from_the_typed_event_not_the_raw_frame(session: VoiceSession) -> None:
    recorder = Recorder(str(session.pk), model="gpt-realtime")
    event = parse_event({"type": "response.done", "response": {"id": "resp_t", "status": "completed", "usage": USAGE}})
    event.raw_message["response"]["usage"] = {"total_tokens": "garbage"}  # nobody reads the raw frame again
    recorder.apply(event)
    await recorder.close()
    record = await _record(str(session.pk))
    assert [(u["response_id"], u["total_tokens"]) for u in record["usages"]] == [("resp_t", 1300)]
    assert record["events"] == []  # and the typed event logs nothing: frames are logged at their source


async def test_each_frame_is_stored_with_its_direction_and_origin(session: VoiceSession) -> None:
    recorder = Recorder(str(session.pk), model="gpt-realtime")
    recorder.tap(RawFrame(direction="from_openai", origin="sideband", text='{"type": "session.created", '
                          '"session": {"id": "sess_9"}}'))
    recorder.tap(RawFrame(direction="to_openai", origin="sideband", text='{"type": "response.create"}'))
    recorder.tap(RawFrame(direction="from_openai", origin="browser", text="{not json"))
    recorder.tap(RawFrame(direction="from_openai", origin="sideband", text=json.dumps(
        {"type": "response.output_text.delta", "item_id": "item_x", "delta": "folded, not logged"})))
    recorder.record("from_browser", {"type": "ag2.ready"})
    recorder.record("to_browser", {"type": "ag2.close", "reason": "hangup"})
    recorder.record("internal", {"type": "ag2.note"})
    with pytest.raises(ValueError):
        recorder.record("from_openai", {"type": "session.created"})
    with pytest.raises(ValueError):
        recorder.tap(RawFrame(direction="from_browser", origin="browser", text="{}"))  # type: ignore[arg-type]
    await recorder.close()
    assert [(e["direction"], e["origin"], e["type"]) for e in (await _record(str(session.pk)))["events"]] == [
        ("from_openai", "sideband", "session.created"), ("to_openai", "sideband", "response.create"),
        ("from_openai", "browser", "ag2.unreadable_frame"), ("from_browser", "browser", "ag2.ready"),
        ("to_browser", "browser", "ag2.close"), ("internal", "server", "ag2.note")]


async def test_a_delta_nothing_can_fold_is_logged_once_when_its_event_arrives(session: VoiceSession) -> None:
    recorder = Recorder(str(session.pk), model="gpt-realtime")
    relay(recorder, {"type": "response.output_audio_transcript.delta", "delta": "no item"}, origin="sideband")
    relay(recorder, {"type": "response.output_audio_transcript.delta", "item_id": "item_a", "delta": 5})
    relay(recorder, {"type": "response.output_audio_transcript.delta", "item_id": "item_a", "delta": "kept"})
    await recorder.close()
    record = await _record(str(session.pk))
    assert [(e["origin"], e["payload"].get("delta")) for e in record["events"]] == [("sideband", "no item"),
                                                                                   ("browser", 5)]
    assert [i["text"] for i in record["items"]] == ["kept"]


async def test_two_observers_of_one_recorder_apply_each_event_once(session: VoiceSession) -> None:
    """A Recorder handed to the agent twice (build_agent's observer and another) still folds a delta once."""
    recorder = Recorder(str(session.pk), model="gpt-realtime")
    first, second = recorder.observer(), sessions.RecordToolCalls(recorder)
    event = parse_event({"type": "response.output_audio_transcript.delta", "item_id": "item_a", "delta": "once"})
    for observer in (first, second):
        await observer.on_event(event)
    await recorder.close()
    assert [i["text"] for i in (await _record(str(session.pk)))["items"]] == ["once"]


def test_a_sideband_gap_is_noted_in_the_record() -> None:
    from voice.realtime.events import SidebandGap

    recorder = Recorder("00000000-0000-0000-0000-000000000000", model="gpt-realtime")
    gap = SidebandGap(call_id="rtc_1", started_at=1.0, ended_at=3.5, attempts=2, reason="close 1006",
                      raw_message={"type": "ag2.sideband_gap", "call_id": "rtc_1", "started_at": 1.0,
                                   "ended_at": 3.5, "attempts": 2, "reason": "close 1006"})
    recorder.apply(gap)
    (row,) = recorder._pending.events
    assert (row["direction"], row["origin"], row["type"]) == ("internal", "sideband", "ag2.sideband_gap")
    assert row["payload"]["reason"] == "close 1006"


async def test_what_was_relayed_before_the_hang_up_still_reaches_the_record(
    owner: User, emulator: str, settings: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The record is derived from the agent's typed events, which trail the raw frames: a hang-up right
    after a burst must not stop the agent before it has read what was relayed."""
    settings.VOICE_MAX_MESSAGES_PER_SECOND = 100_000
    on_event = RecorderObserver.on_event

    async def slow_observer(observer: RecorderObserver, event: Any) -> None:
        await asyncio.sleep(0.002)  # an agent slower than the browser: relayed events queue up behind it
        await on_event(observer, event)

    monkeypatch.setattr(RecorderObserver, "on_event", slow_observer)
    peer, connected = await open_peer(owner)
    assert connected
    usage = {"total_tokens": 10, "input_tokens": 10, "output_tokens": 0}
    for i in range(400):
        await peer.ws.send_to(text_data=json.dumps(
            {"type": "response.done", "response": {"id": f"resp_{i}", "status": "completed", "usage": usage}}))
    await peer.send({"type": "ag2.hangup"})
    init = await peer.until("ag2.init", timeout=15)
    assert await peer.closed(timeout=15) == 1000
    session_id = init["session_id"]

    async def ended() -> bool:
        return (await database_sync_to_async(VoiceSession.objects.get)(pk=session_id)).status == "ended"

    assert await wait_for(ended, timeout=10)
    record = await _record(session_id)
    assert len(record["usages"]) == 400 and record["session"]["total_tokens"] == 4000
    assert len([e for e in record["events"] if e["type"] == "response.done"]) == 400


def test_the_admin_lists_and_filters_events_by_direction_and_origin(owner: User, superuser: User) -> None:
    from django.test import Client

    config = VoiceConfig.objects.get(slug="default")
    session = VoiceSession.objects.create(user=owner, config=config, model="gpt-realtime")
    SessionEvent.objects.bulk_create([
        SessionEvent(session=session, seq=1, direction="from_openai", origin="sideband", type="session.created"),
        SessionEvent(session=session, seq=2, direction="to_openai", origin="browser", type="response.create"),
        SessionEvent(session=session, seq=3, direction="from_browser", type="ag2.ready"),  # logged before origins
    ])
    client = Client()
    client.force_login(superuser)
    page = client.get("/admin/voice/sessionevent/").content.decode()
    assert "from OpenAI" in page and "to OpenAI" in page and "sideband" in page
    filtered = client.get("/admin/voice/sessionevent/?origin__exact=sideband").content.decode()
    assert "session.created" in filtered and "response.create" not in filtered and "ag2.ready" not in filtered
    by_direction = client.get("/admin/voice/sessionevent/?direction__exact=to_openai").content.decode()
    assert "response.create" in by_direction and "session.created" not in by_direction
