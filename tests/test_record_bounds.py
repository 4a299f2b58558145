"""One bad value never costs the rest of the record (issue 10, items 1, 3, 4 and 13).

Every test here runs against the configured database: SQLite by default, PostgreSQL with DATABASE_URL.
The values were each observed to make a whole batch unwritable, the session stay `active` and its
user be locked out; here each costs at most its own value (bounded, with a note), never a row of
anything else.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import Client

from tests.record_feed import relay, sent
from tests.test_recording import USAGE, CollectingBroadcaster, conversation
from tests.ws_helpers import disconnect_peers, started, wait_for  # noqa: F401  (autouse fixture)
from voice import recording
from voice.models import ModelPrice, ResponseUsage, SessionEvent, ToolCall, TranscriptItem, VoiceConfig, VoiceSession
from voice.recording import Recorder

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("relay_mode")]

FFFD = "\ufffd"
SURROGATE = "\ud800"


@pytest.fixture
def session(owner: User) -> VoiceSession:
    config = VoiceConfig.objects.get(slug="default")
    return VoiceSession.objects.create(user=owner, config=config, model="gpt-realtime")


@pytest.fixture
def sessions(owner: User) -> list[VoiceSession]:
    config = VoiceConfig.objects.get(slug="default")
    return [VoiceSession.objects.create(user=owner, config=config, model="gpt-realtime") for _ in range(4)]


def _recorder(session: VoiceSession, **kwargs: Any) -> Recorder:
    return Recorder(str(session.pk), model="gpt-realtime", **kwargs)


async def _end(recorder: Recorder) -> None:
    """End the session as the consumer does: the status change goes with the last batch."""
    recorder.update_session(status=VoiceSession.Status.ENDED, end_reason="hangup")
    await recorder.close()


@database_sync_to_async
def _record(session: VoiceSession) -> dict[str, Any]:
    session.refresh_from_db()
    return {
        "session": session,
        "events": list(SessionEvent.objects.filter(session=session).order_by("seq").values("seq", "type", "payload")),
        "items": {i.item_id: i for i in TranscriptItem.objects.filter(session=session)},
        "tools": {t.call_id: t for t in ToolCall.objects.filter(session=session)},
        "usages": list(ResponseUsage.objects.filter(session=session).order_by("created_at")),
    }


def _notes(rows: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in rows["events"] if e["type"] == kind]


# --- item 1: values bounded where they enter -----------------------------------------------------------

async def test_a_lone_surrogate_anywhere_in_relayed_events_costs_nothing_but_that_character(
    session: VoiceSession,
) -> None:
    recorder = _recorder(session)
    frames = [
        {"type": f"rate_limits{SURROGATE}.updated", "rate_limits": [{"name": f"r{SURROGATE}", SURROGATE: 1}]},
        {"type": "conversation.item.added", "previous_item_id": None,
         "item": {"id": "item_u", "type": "message", "role": "user",
                  "content": [{"type": "input_text", "text": f"hello {SURROGATE}world"}]}},
        {"type": "response.output_audio_transcript.delta", "item_id": "item_a", "response_id": "resp_1",
         "delta": f"half{SURROGATE}"},
        {"type": "response.output_audio_transcript.delta", "item_id": "item_a", "response_id": "resp_1",
         "delta": "\udc00done"},
        {"type": "response.function_call_arguments.done", "call_id": "call_s", "name": "calculator",
         "item_id": "item_f", "arguments": '{"expression": "1+1\\ud800", "\\udfffkey": "\\u0000"}'},
        {"type": "response.output_item.done", "response_id": "resp_1",
         "item": {"id": "item_f", "type": "function_call", "status": "completed", "call_id": "call_s",
                  "name": "calculator", "arguments": f'{{"expression": "1+1{SURROGATE}"}}'}},
        *conversation(),
        {"type": "session.updated", "session": {"id": f"sess_{SURROGATE}", "instructions": SURROGATE}},
    ]
    for frame in frames:
        relay(recorder, frame)
    sent(recorder, {"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "call_s", "output": f'{{"result": "2{SURROGATE}"}}'}})
    await _end(recorder)
    rows = await _record(session)
    assert rows["session"].status == "ended"
    assert rows["items"]["item_u"].text == f"hello {FFFD}world"
    assert rows["items"]["item_a"].text == f"half{FFFD}{FFFD}done"
    assert rows["items"]["item_asst1"].text == "It is noon in UTC."  # the rest of the batch is there
    tool = rows["tools"]["call_s"]
    assert tool.arguments == {"expression": f"1+1{FFFD}", f"{FFFD}key": FFFD}
    assert tool.output == f'{{"result": "2{FFFD}"}}'
    assert rows["session"].openai_session_id == f"sess_{FFFD}"
    assert rows["events"][0]["type"] == f"rate_limits{FFFD}.updated"
    assert rows["events"][0]["payload"]["rate_limits"] == [{"name": f"r{FFFD}", FFFD: 1}]
    assert not _notes(rows, "ag2.unwritable_row")


async def test_token_counts_past_any_column_are_refused_and_running_sums_past_2_31_are_kept(
    session: VoiceSession,
) -> None:
    recorder = _recorder(session)
    huge = {**USAGE, "total_tokens": 10**18, "input_tokens": 10**18 - 300}
    relay(recorder, {"type": "response.done", "response": {"id": "resp_huge", "status": "completed",
                                                                           "usage": huge}})
    # Sums a long session reaches: each response believable, their total past a 32-bit column.
    recorder.max_response_tokens, recorder.max_session_tokens = 10**9, 10**10
    big = {"total_tokens": 900_000_000, "input_tokens": 900_000_000, "output_tokens": 0,
           "input_token_details": {"text_tokens": 900_000_000}}
    for i in range(3):
        relay(recorder, {"type": "response.done", "response": {"id": f"resp_{i}",
                                                                               "status": "completed", "usage": big}})
    await _end(recorder)
    rows = await _record(session)
    assert rows["session"].status == "ended"
    assert [u.response_id for u in rows["usages"]] == ["resp_0", "resp_1", "resp_2"]
    assert rows["session"].total_tokens == rows["session"].input_tokens == 2_700_000_000
    assert rows["session"].turns == 3
    refused = _notes(rows, "ag2.usage_refused")
    assert [n["response_id"] for n in refused] == ["resp_huge"]


async def test_over_long_ids_roles_and_tool_names_are_bounded_and_noted_once(session: VoiceSession) -> None:
    recorder = _recorder(session)
    long_id = "item_" + "x" * 300
    for suffix in ("1", "2"):
        relay(recorder, {"type": "conversation.item.added", "previous_item_id": "p" * 200,
                                         "item": {"id": long_id + suffix, "type": "message",
                                                  "role": "assistant-of-unusual-length",
                                                  "content": [{"type": "output_text", "text": suffix}]}})
    relay(recorder, {"type": "response.function_call_arguments.done", "call_id": "c" * 500,
                                     "name": "t" * 250, "item_id": "item_f", "arguments": "{}"})
    relay(recorder, {"type": "response.done", "response": {"id": "r" * 400, "status": "x" * 40,
                                                                           "usage": USAGE}})
    await _end(recorder)
    rows = await _record(session)
    assert rows["session"].status == "ended"
    items = sorted(rows["items"].values(), key=lambda i: i.text)
    assert [i.text for i in items] == ["1", "2"]  # two distinct items, not one overwritten
    assert all(len(i.item_id) == 128 and i.item_id.startswith("item_xxx") for i in items)
    assert all(i.role == "" and len(i.previous_item_id) == 128 for i in items)
    (tool,) = rows["tools"].values()
    assert tool.name == "t" * 128 and len(tool.call_id) == 128
    assert len(rows["usages"][0].response_id) == 128 and rows["usages"][0].status == "x" * 16
    notes = _notes(rows, "ag2.value_bounded")
    assert sorted(n["field"] for n in notes) == ["call_id", "item_id", "name", "previous_item_id", "response_id",
                                                 "role"]


@pytest.mark.parametrize("bad", [-5, "12", "abc", 2**40, 1.5, None, [1], {"ms": 1}, True])
async def test_negative_or_non_numeric_audio_times_are_stored_as_null_with_a_note(session: VoiceSession,
                                                                                   bad: Any) -> None:
    recorder = _recorder(session)
    relay(recorder, {"type": "input_audio_buffer.speech_started", "item_id": "item_u",
                                     "audio_start_ms": bad})
    relay(recorder, {"type": "input_audio_buffer.speech_stopped", "item_id": "item_u",
                                     "audio_end_ms": bad})
    relay(recorder, {"type": "input_audio_buffer.speech_started", "item_id": "item_ok",
                                     "audio_start_ms": 100})
    relay(recorder, {"type": "conversation.item.truncated", "item_id": "item_t",
                                     "content_index": 0, "audio_end_ms": bad})
    await _end(recorder)
    rows = await _record(session)
    assert rows["session"].status == "ended"
    assert (rows["items"]["item_u"].audio_start_ms, rows["items"]["item_u"].audio_end_ms) == (None, None)
    assert rows["items"]["item_ok"].audio_start_ms == 100
    assert rows["items"]["item_t"].status == "truncated" and rows["items"]["item_t"].audio_end_ms is None
    fields = {n["field"] for n in _notes(rows, "ag2.value_bounded")}
    assert fields == (set() if bad is None else {"audio_start_ms", "audio_end_ms"})


# --- item 3 (issue item 1): the writer isolates a row that still fails ------------------------------------

async def test_rows_the_database_refuses_cost_only_themselves_across_a_combined_write(
    sessions: list[VoiceSession], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows injected at the writer's edge, past every bound, that each backend really refuses: a CHECK
    constraint (negative audio_start_ms, negative seq), text its driver cannot encode (a lone surrogate)."""
    calls: list[int] = []
    original = recording.write_batches
    monkeypatch.setattr(recording, "write_batches", lambda pairs: calls.append(len(pairs)) or original(pairs))
    recorders = [_recorder(s, flush_seconds=60) for s in sessions]
    for recorder in recorders:
        recorder.start()
        for frame in conversation():
            relay(recorder, frame)
        recorder.update_session(status=VoiceSession.Status.ENDED, end_reason="hangup")
    poisoned = recorders[1]
    poisoned._pending.items["item_user1"]["audio_start_ms"] = -5  # CHECK (audio_start_ms >= 0)
    poisoned._items["item_bad_text"] = {**poisoned._items["item_asst1"], "item_id": "item_bad_text",
                                        "text": f"cannot encode {SURROGATE}"}
    poisoned._pending.items["item_bad_text"] = poisoned._items["item_bad_text"]
    refused_event = poisoned._pending.events[2]
    refused_event["type"] = f"bad{SURROGATE}"
    writer = recording._writer_for_loop()
    await writer.write_round()  # one combined write of every session, as the process's writer does
    assert calls == [len(sessions)]
    for recorder in recorders:
        await recorder.close()  # writes the notes of the refused rows
    assert poisoned.failed_flushes == 0  # nothing was retried: a refused row is not an outage

    for session in sessions[:1] + sessions[2:]:
        rows = await _record(session)
        assert rows["session"].status == "ended" and rows["session"].total_tokens == 1300
        assert len(rows["events"]) == len(conversation()) - 4
        assert [i.text for i in rows["items"].values()] == ["What time is it?", "It is noon in UTC."]

    rows = await _record(sessions[1])
    assert rows["session"].status == "ended" and rows["session"].end_reason == "hangup"
    assert rows["session"].total_tokens == 1300 and rows["session"].cost_usd > 0
    assert len(rows["usages"]) == 1
    assert rows["items"]["item_asst1"].text == "It is noon in UTC."  # the rest of the batch
    assert "item_user1" not in rows["items"] and "item_bad_text" not in rows["items"]
    seqs = [e["seq"] for e in rows["events"]]
    assert seqs == list(range(1, len(seqs) + 1))  # gapless: the refused event's note took its seq
    in_place = rows["events"][2]
    assert in_place["type"] == "ag2.unwritable_row" and in_place["payload"]["table"] == "event"
    assert "bad\\ud800" in in_place["payload"]["row"] and in_place["payload"]["error"]
    notes = {n["key"]: n for n in _notes(rows, "ag2.unwritable_row") if n["table"] == "transcriptitem"}
    assert set(notes) == {"'item_user1'", "'item_bad_text'"}
    assert "-5" in notes["'item_user1'"]["row"] and "IntegrityError" in notes["'item_user1'"]["error"]
    assert "cannot encode \\ud800" in notes["'item_bad_text'"]["row"]


async def test_a_session_column_the_database_refuses_still_lets_the_session_end(
    session: VoiceSession,
) -> None:
    """A value injected at the writer's edge into the session's own row, refused by a CHECK constraint
    on both backends: the other columns of that row (the end of the session) are written all the same."""
    recorder = _recorder(session)
    for frame in conversation():
        relay(recorder, frame)
    recorder.update_session(status=VoiceSession.Status.ENDED, end_reason="hangup")
    recorder._pending.session["max_duration_seconds"] = -1  # CHECK (max_duration_seconds >= 0)
    await recorder.close()
    rows = await _record(session)
    assert (rows["session"].status, rows["session"].end_reason) == ("ended", "hangup")
    assert rows["session"].total_tokens == 1300 and rows["session"].cost_usd == rows["usages"][0].cost_usd
    notes = _notes(rows, "ag2.unwritable_row")
    assert [(n["table"], n["key"]) for n in notes] == [("voicesession", "'max_duration_seconds'")]


async def test_a_cost_past_its_column_is_bounded_and_noted_not_stored_unreadable(session: VoiceSession) -> None:
    """A price entered wrongly: PostgreSQL refused the overflowing cost, SQLite stored it and then
    could not read the session back (InvalidOperation on every page that shows it)."""
    await database_sync_to_async(ModelPrice.objects.filter(model="gpt-realtime").update)(
        audio_output=Decimal("999999.9999"))
    recorder = _recorder(session)
    recorder.max_response_tokens = 10**7
    usage = {"total_tokens": 1_000_000, "input_tokens": 0, "output_tokens": 1_000_000,
             "output_token_details": {"audio_tokens": 1_000_000}}
    for i in range(3):
        relay(recorder, {"type": "response.done",
                                         "response": {"id": f"resp_{i}", "status": "completed", "usage": usage}})
    await _end(recorder)
    rows = await _record(session)
    assert rows["session"].status == "ended" and rows["session"].total_tokens == 3_000_000
    assert len(rows["usages"]) == 3
    assert rows["session"].cost_usd == recording.MAX_COST
    notes = _notes(rows, "ag2.value_bounded")
    assert [n["field"] for n in notes] == ["voicesession.cost_usd"]
    assert not _notes(rows, "ag2.unwritable_row")


async def test_an_outage_is_not_mistaken_for_a_refused_row(session: VoiceSession,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import OperationalError

    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(recording, "_insert_events", down)
    recorder = _recorder(session, max_retries=1)
    relay(recorder, {"type": "rate_limits.updated", "rate_limits": []})
    await recorder.flush()
    assert recorder.failed_flushes == 1 and len(recorder._pending.events) == 1  # kept for a retry, not noted


# --- item 3 of the issue: unbounded growth -----------------------------------------------------------------

async def test_200_deltas_of_250_kb_to_one_item_do_not_make_a_50_mb_row(session: VoiceSession) -> None:
    broadcaster = CollectingBroadcaster()
    recorder = _recorder(session, broadcaster=broadcaster)  # type: ignore[arg-type]
    chunk = "y" * 250_000
    for _ in range(200):
        relay(recorder, {"type": "response.output_audio_transcript.delta", "item_id": "item_big",
                                         "response_id": "resp_1", "delta": chunk})
    relay(recorder, {"type": "response.output_audio_transcript.delta", "item_id": "item_small",
                                     "response_id": "resp_1", "delta": "still recorded"})
    await _end(recorder)
    rows = await _record(session)
    big = rows["items"]["item_big"]
    assert len(big.text) == recorder.max_item_chars == 100_000 and big.text_truncated
    assert rows["items"]["item_small"].text == "still recorded" and not rows["items"]["item_small"].text_truncated
    assert _notes(rows, "ag2.text_truncated") == [{"type": "ag2.text_truncated", "item_id": "item_big",
                                                   "scope": "item", "limit": 100_000}]
    streamed = sum(len(p["delta"]) for p in broadcaster.sent if p["type"] == "delta" and p["item_id"] == "item_big")
    assert streamed == 100_000  # nothing past the bound reaches the watchers either
    assert "[text cut" in (await database_sync_to_async(rows["session"].transcript_text)())


async def test_a_sessions_text_is_bounded_across_items(session: VoiceSession, settings: Any) -> None:
    settings.VOICE_MAX_ITEM_TEXT_CHARS = 5_000
    settings.VOICE_MAX_SESSION_TEXT_CHARS = 12_000
    recorder = _recorder(session)
    for i in range(5):
        relay(recorder, {"type": "conversation.item.done", "previous_item_id": None,
                                         "item": {"id": f"item_{i}", "type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "z" * 4_000}]}})
    await _end(recorder)
    rows = await _record(session)
    lengths = [len(rows["items"][f"item_{i}"].text) for i in range(5)]
    assert lengths == [4_000, 4_000, 4_000, 0, 0]
    assert [rows["items"][f"item_{i}"].text_truncated for i in range(5)] == [False, False, False, True, True]
    assert [(n["scope"], n["limit"]) for n in _notes(rows, "ag2.text_truncated")] == [("session", 12_000)]


# --- item 4 of the issue: usage taken on trust -------------------------------------------------------------

async def test_a_forged_response_done_costs_nothing_and_is_noted(session: VoiceSession) -> None:
    recorder = _recorder(session)
    forged = {"total_tokens": 2_000_000_000, "input_tokens": 0, "output_tokens": 2_000_000_000,
              "output_token_details": {"text_tokens": 0, "audio_tokens": 2_000_000_000}}  # $128,000 at $64/M
    relay(recorder, {"type": "response.done", "response": {"id": "resp_forged",
                                                                           "status": "completed", "usage": forged}})
    for frame in conversation():
        relay(recorder, frame)
    await _end(recorder)
    rows = await _record(session)
    assert [u.response_id for u in rows["usages"]] == ["resp_1"]
    assert rows["session"].total_tokens == 1300 and rows["session"].cost_usd < 1
    assert rows["session"].cost_usd == rows["usages"][0].cost_usd
    (note,) = _notes(rows, "ag2.usage_refused")
    assert note["response_id"] == "resp_forged" and "output_tokens" in note["problem"]


async def test_five_frames_with_one_response_id_count_once(session: VoiceSession) -> None:
    recorder = _recorder(session)
    for _ in range(5):
        relay(recorder, {"type": "response.done", "response": {"id": "resp_same",
                                                                               "status": "completed", "usage": USAGE}})
    await _end(recorder)
    rows = await _record(session)
    assert len(rows["usages"]) == 1
    stored = rows["session"]
    assert (stored.turns, stored.input_tokens, stored.output_tokens, stored.total_tokens) == (1, 1000, 300, 1300)
    assert stored.cost_usd == rows["usages"][0].cost_usd
    assert recorder.totals()["total_tokens"] == 1300
    assert [n["problem"] for n in _notes(rows, "ag2.usage_refused")] == ["usage already counted"]


@pytest.mark.parametrize("usage", [
    {**USAGE, "input_tokens": -1000},
    {**USAGE, "total_tokens": 50_000},
    {**USAGE, "output_tokens": "300"},
])
async def test_negative_or_inconsistent_usage_is_refused(session: VoiceSession, usage: dict[str, Any]) -> None:
    recorder = _recorder(session)
    relay(recorder, {"type": "response.done", "response": {"id": "resp_x", "usage": usage}})
    await _end(recorder)
    rows = await _record(session)
    assert rows["usages"] == [] and rows["session"].total_tokens == 0 and rows["session"].cost_usd == 0
    assert len(_notes(rows, "ag2.usage_refused")) == 1


# --- item 13 of the issue: secrets in the record --------------------------------------------------------

async def test_the_client_secret_is_neither_recorded_nor_streamed(session: VoiceSession) -> None:
    broadcaster = CollectingBroadcaster()
    recorder = _recorder(session, broadcaster=broadcaster)  # type: ignore[arg-type]
    init = {"type": "ag2.init", "protocol": 1, "session_id": str(session.pk),
            "config": {"value": "ek_68af1c2e9d3b4a5f", "expires_at": 1, "model": "gpt-realtime"}, "init": []}
    recorder.record("to_browser", init)
    await _end(recorder)
    assert init["config"]["value"] == "ek_68af1c2e9d3b4a5f"  # what the browser gets is untouched
    rows = await _record(session)
    assert rows["events"][0]["payload"]["config"]["value"] == "[redacted]"
    assert rows["events"][0]["payload"]["config"]["model"] == "gpt-realtime"
    streamed = [p for p in broadcaster.sent if p["type"] == "event"]
    assert streamed and "ek_68af1c2e9d3b4a5f" not in json.dumps(streamed)


async def test_the_secret_of_a_real_session_is_absent_from_its_row_admin_pages_and_dashboard(
    owner: User, superuser: User, emulator: str,
) -> None:
    from voice.consumers import _session_snapshot

    peer, init = await started(owner)
    secret = init["config"]["value"]
    assert secret.startswith("ek_")
    await peer.send({"type": "ag2.hangup"})
    assert await peer.closed() == 1000
    session_id = init["session_id"]

    @database_sync_to_async
    def pages() -> list[str]:
        client = Client()
        client.force_login(superuser)
        event = SessionEvent.objects.get(session_id=session_id, type="ag2.init")
        assert event.payload["config"]["value"] == "[redacted]"
        urls = [f"/admin/voice/voicesession/{session_id}/change/",
                f"/admin/voice/sessionevent/{event.pk}/change/",
                f"/admin/voice/sessionevent/?q={session_id}"]
        return [client.get(url).content.decode() for url in urls]

    for page in await pages():
        assert secret not in page
    snapshot = await _session_snapshot(session_id, superuser)
    assert snapshot is not None and any(e["type"] == "ag2.init" for e in snapshot["events"])
    assert secret not in json.dumps(snapshot)


async def test_a_lone_surrogate_relayed_through_the_socket_does_not_stop_the_session_ending(
    owner: User, emulator: str,
) -> None:
    """As observed: the whole batch used to be retried forever and the session left `active`. The
    consumer now refuses such frames with an error (tests/test_poison_frames.py); the Recorder bounds
    whatever still reaches it (the tests above), and the session ends with its record intact."""
    peer, init = await started(owner)
    for raw in [
        '{"type": "response.output_audio_transcript.delta", "item_id": "item_s", "delta": "x\\ud800"}',
        '{"type": "conversation.item.added", "previous_item_id": null, "item": {"id": "item_t", "type": "message",'
        ' "role": "user", "content": [{"type": "input_text", "text": "\\udfff"}]}, "extra": {"\\ud800": 1}}',
        '{"type": "input_audio_buffer.speech_started", "item_id": "item_t", "audio_start_ms": -1}',
    ]:
        await peer.ws.send_to(text_data=raw)
    await peer.send({"type": "ag2.hangup"})
    assert await peer.closed() == 1000

    async def ended() -> VoiceSession | None:
        session = await database_sync_to_async(VoiceSession.objects.get)(pk=init["session_id"])
        return session if session.status == "ended" else None

    assert await wait_for(ended) is not None
    rows = await _record(await ended())  # type: ignore[arg-type]
    refused = [e for e in rows["events"] if e["type"] == "ag2.invalid_frame"]
    assert len(refused) == 2 and "item_s" not in rows["items"]
    assert rows["items"]["item_t"].audio_start_ms is None
    assert "ag2.hangup" in [e["type"] for e in rows["events"]]


async def test_usage_past_what_a_session_can_reach_is_refused(session: VoiceSession) -> None:
    recorder = _recorder(session)
    recorder.max_session_tokens = 2_000
    for i in range(2):
        relay(recorder, {"type": "response.done", "response": {"id": f"resp_{i}", "usage": USAGE}})
    await _end(recorder)
    rows = await _record(session)
    assert [u.response_id for u in rows["usages"]] == ["resp_0"] and rows["session"].total_tokens == 1300
    (note,) = _notes(rows, "ag2.usage_refused")
    assert note["response_id"] == "resp_1" and "2000" in note["problem"]
