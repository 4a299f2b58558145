"""Pages stay cheap however many sessions there are: constant queries, no DISTINCT, pages and
streams instead of everything at once, and nothing cut off without saying so.

Timings are measured by benchmarks/bench_scale.py; these tests pin the behaviour that makes them hold.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from voice import admin as voice_admin
from voice import paging, snapshots
from voice.models import (
    CallRecording,
    ResponseUsage,
    SessionEvent,
    ToolCall,
    TranscriptItem,
    VoiceConfig,
    VoiceSession,
    order_by_chain,
)

pytestmark = pytest.mark.django_db

SESSIONS = "/admin/voice/voicesession/"


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _sessions(user: User, count: int, *, items: int = 2, status: str = "ended", offset: int = 0) -> list[VoiceSession]:
    """`count` sessions of `user`, newest first, each with `items` transcript items and a tool call."""
    config = VoiceConfig.objects.get(slug="default")
    now = timezone.now()
    sessions = VoiceSession.objects.bulk_create(
        VoiceSession(user=user, config=config, config_name=config.name, model="gpt-realtime", status=status,
                     call_id=f"rtc_{offset + i}", started_at=now - timedelta(minutes=offset + i))
        for i in range(count)
    )
    TranscriptItem.objects.bulk_create(
        TranscriptItem(session=s, item_id=f"it{n}", previous_item_id=f"it{n - 1}" if n else "",
                       role="user" if n % 2 == 0 else "assistant", text=f"line {n} of {s.call_id}",
                       status="completed", created_at=s.started_at + timedelta(seconds=n))
        for s in sessions for n in range(items)
    )
    ToolCall.objects.bulk_create(ToolCall(session=s, call_id="c1", name="current_time", status="succeeded")
                                 for s in sessions)
    return sessions


def _sql(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries]


# --- the admin session list ---------------------------------------------------------------------------


@pytest.mark.parametrize("params", [{}, {"status__exact": "ended"}, {"model": "gpt-realtime"}, {"q": "line"},
                                    {"q": "rtc_3"}, {"q": "alice"}])
def test_the_session_list_runs_the_same_queries_for_5_or_60_sessions_and_never_distinct(
        superuser: User, owner: User, params: dict[str, str], django_assert_max_num_queries: Any) -> None:
    client = _client(superuser)
    _sessions(owner, 5)
    with CaptureQueriesContext(connection) as few:
        assert client.get(SESSIONS, params).status_code == 200
    _sessions(owner, 55, offset=5)
    with django_assert_max_num_queries(len(few)), CaptureQueriesContext(connection) as many:
        assert client.get(SESSIONS, params).status_code == 200
    for sql in _sql(few) + _sql(many):
        assert "DISTINCT" not in sql.upper(), sql


def test_the_model_filter_offers_known_models_without_reading_the_sessions(superuser: User, owner: User) -> None:
    _sessions(owner, 3)
    with CaptureQueriesContext(connection) as queries:
        page = _client(superuser).get(SESSIONS)
    assert "?model=gpt-realtime-mini" in page.content.decode()
    assert not [sql for sql in _sql(queries) if "DISTINCT" in sql.upper()
                or sql.startswith('SELECT "voice_voicesession"."model" FROM')]


def test_a_session_id_search_is_a_primary_key_lookup(superuser: User, owner: User) -> None:
    sessions = _sessions(owner, 3)
    with CaptureQueriesContext(connection) as queries:
        page = _client(superuser).get(SESSIONS, {"q": str(sessions[1].pk)})
    assert list(page.context["cl"].result_list) == [sessions[1]]
    listing = [sql for sql in _sql(queries) if sql.startswith('SELECT "voice_voicesession"."id"')]
    assert listing and all("UPPER" not in sql for sql in listing)
    assert all('"voice_voicesession"."id" = ' in sql for sql in listing)


def test_a_transcript_search_finds_each_session_once_and_every_word_must_match(superuser: User,
                                                                                 owner: User) -> None:
    one, two = _sessions(owner, 2, items=4)
    TranscriptItem.objects.create(session=one, item_id="x1", role="user", text="Book a table in Lisbon")
    TranscriptItem.objects.create(session=one, item_id="x2", role="user", text="A table for two in LISBON")
    TranscriptItem.objects.create(session=two, item_id="x1", role="user", text="Lisbon weather please")
    client = _client(superuser)
    assert list(client.get(SESSIONS, {"q": "lisbon"}).context["cl"].result_list) == [one, two]
    assert list(client.get(SESSIONS, {"q": "lisbon table"}).context["cl"].result_list) == [one]
    assert list(client.get(SESSIONS, {"q": '"table for two"'}).context["cl"].result_list) == [one]
    assert client.get(SESSIONS, {"q": "madrid"}).context["cl"].result_count == 0


def test_a_search_naming_many_people_or_a_call_id_still_finds_their_sessions(superuser: User, owner: User) -> None:
    people = [User.objects.create_user(f"crowd{i}") for i in range(25)]  # more than FEW_PEOPLE
    for person in people[:3]:
        _sessions(person, 1)
    mine = _sessions(owner, 2)
    client = _client(superuser)
    assert client.get(SESSIONS, {"q": "crowd"}).context["cl"].result_count == 3
    assert list(client.get(SESSIONS, {"q": mine[1].call_id}).context["cl"].result_list) == [mine[1]]


def test_a_filtered_count_stops_at_its_cap_says_so_and_later_pages_still_open(
        superuser: User, owner: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paging, "COUNT_UP_TO", 60)
    _sessions(owner, 130, items=0)
    client = _client(superuser)
    first = client.get(SESSIONS, {"status__exact": "ended"})
    body = first.content.decode()
    assert first.context["cl"].paginator.is_capped
    assert "more than 60 voice sessions" in body and "Next page" not in body
    second = client.get(SESSIONS, {"status__exact": "ended", "p": 2})
    assert "Next page" in second.content.decode()  # the last counted page offers the next one
    third = client.get(SESSIONS, {"status__exact": "ended", "p": 3})
    assert third.status_code == 200 and len(third.context["cl"].result_list) == 30


def test_the_event_list_search_by_session_id_filters_the_column_and_orders_by_seq(superuser: User,
                                                                                 owner: User) -> None:
    one, two = _sessions(owner, 2, items=0)
    SessionEvent.objects.bulk_create([SessionEvent(session=s, seq=n, direction="internal", type="response.done")
                                      for s in (one, two) for n in (3, 1, 2)])
    with CaptureQueriesContext(connection) as queries:
        page = _client(superuser).get("/admin/voice/sessionevent/", {"q": str(one.pk)})
    assert [(e.session_id, e.seq) for e in page.context["cl"].result_list] == [(one.pk, 1), (one.pk, 2), (one.pk, 3)]
    assert not [sql for sql in _sql(queries) if "UPPER" in sql and "session_id" in sql]
    by_type = _client(superuser).get("/admin/voice/sessionevent/", {"q": "response."})
    assert len(by_type.context["cl"].result_list) == 6


# --- long sessions: the admin change page, the transcript page, "My sessions" ---------------------------


@pytest.fixture
def long_session(owner: User) -> VoiceSession:
    (session,) = _sessions(owner, 1, items=250)
    ToolCall.objects.bulk_create(ToolCall(session=session, call_id=f"long{n}", name=f"tool_{n}", status="succeeded",
                                          started_at=session.started_at + timedelta(seconds=n)) for n in range(44))
    ResponseUsage.objects.bulk_create(ResponseUsage(session=session, response_id=f"resp_{n}", total_tokens=n)
                                      for n in range(30))
    return session


def test_the_admin_change_page_pages_its_transcript_and_inlines(superuser: User, long_session: VoiceSession,
                                                                django_assert_max_num_queries: Any) -> None:
    client = _client(superuser)
    url = f"{SESSIONS}{long_session.pk}/change/"
    with django_assert_max_num_queries(15):
        body = client.get(url).content.decode()
    assert "line 0 of" in body and "line 99 of" in body and "line 100 of" not in body
    assert "Items 1–100 of 250" in body and "transcript_page=2" in body
    assert "Tool calls 1–20 of 45" in body and "tool_calls_page=2" in body  # 44 + the fixture's own
    assert "Response usages 1–20 of 30" in body
    later = client.get(url, {"transcript_page": 3, "tool_calls_page": 3}).content.decode()
    assert "line 249 of" in later and "line 199 of" not in later and "tool_43" in later


def test_the_transcript_page_is_paged_in_conversation_order(owner: User, long_session: VoiceSession) -> None:
    client = _client(owner)
    first = client.get(long_session.get_absolute_url())
    assert [i.item_id for i in first.context["items"]] == [f"it{n}" for n in range(100)]
    assert "Items 1–100 of 250" in first.content.decode()
    last = client.get(long_session.get_absolute_url(), {"page": 3})
    assert [i.item_id for i in last.context["items"]] == [f"it{n}" for n in range(200, 250)]
    assert [t.call_id for t in first.context["tool_calls"]][:3] == ["long0", "c1", "long1"]  # in the order they ran
    assert len(first.context["tool_calls"]) == 45


def test_my_sessions_pages_through_every_session_and_searches(owner: User, colleague: User) -> None:
    sessions = _sessions(owner, 120, items=1)
    _sessions(colleague, 3, items=1)
    client = _client(owner)
    first = client.get("/voice/sessions/")
    assert list(first.context["sessions"]) == sessions[:50]
    assert "Sessions 1–50 of 120" in first.content.decode()
    last = client.get("/voice/sessions/", {"page": 3})
    assert list(last.context["sessions"]) == sessions[100:]  # the oldest are reachable
    found = client.get("/voice/sessions/", {"q": "rtc_119"})
    assert list(found.context["sessions"]) == [sessions[119]]
    TranscriptItem.objects.create(session=sessions[11], item_id="lisbon", role="user", text="Fly me to Lisbon")
    said = client.get("/voice/sessions/", {"q": "lisbon"})
    assert list(said.context["sessions"]) == [sessions[11]]
    assert client.get("/voice/sessions/", {"q": str(sessions[3].pk)}).context["sessions"][0] == sessions[3]
    assert client.get("/voice/sessions/", {"q": "bob"}).context["page"].paginator.count == 0


def test_chain_order_places_a_late_transcription_after_its_predecessor(owner: User) -> None:
    (session,) = _sessions(owner, 1, items=0)
    start = session.started_at
    reply = TranscriptItem.objects.create(session=session, item_id="b", previous_item_id="a", role="assistant",
                                          created_at=start + timedelta(seconds=1))
    question = TranscriptItem.objects.create(session=session, item_id="a", role="user",
                                             created_at=start + timedelta(seconds=2))
    assert order_by_chain([reply, question]) == [question, reply]
    assert [i.item_id for i in session.transcript_page(1).object_list] == ["a", "b"]


# --- exports --------------------------------------------------------------------------------------------


def _export(client: Client, fmt: str, sessions: list[VoiceSession]) -> tuple[Any, bytes]:
    response = client.post(SESSIONS, {"action": f"export_{fmt}", "_selected_action": [s.pk for s in sessions]})
    assert response.streaming
    return response, b"".join(response.streaming_content)


def test_an_export_streams_with_a_fixed_number_of_queries_per_chunk(
        superuser: User, owner: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(voice_admin, "EXPORT_CHUNK", 4)
    client = _client(superuser)
    few = _sessions(owner, 4, items=3)
    with CaptureQueriesContext(connection) as one_chunk:
        _export(client, "json", few)
    many = few + _sessions(owner, 12, items=3, offset=4)
    _record(many[4:])  # recordings and turn timing, read in bulk like the rest
    with CaptureQueriesContext(connection) as four_chunks:
        _, body = _export(client, "json", many)
    # Each further chunk costs its sessions (with users and recordings), their items, their tool calls,
    # their timing events and their usage (the replay timeline): 5 queries.
    assert len(four_chunks) - len(one_chunk) == 3 * 5
    data = json.loads(body)
    assert [d["id"] for d in data] == [str(s.pk) for s in many]  # the list's order, newest first
    assert data[0]["recording"] is None and data[0]["turn_timing"] == []
    assert data[5]["recording"]["url"].endswith(f"/voice/sessions/{many[5].pk}/recording.webm")
    assert data[5]["turn_timing"][0]["latency_ms"] == 700 and data[5]["transcript"][1]["recording_ms"] == 1700
    assert [i["text"] for i in data[5]["transcript"]] == [f"line {n} of {many[5].call_id}" for n in range(3)]
    assert data[0]["tool_calls"][0]["name"] == "current_time"


def _record(sessions: list[VoiceSession]) -> None:
    """Each session recorded from its start, with one timed turn (0.7 s) answering its first line."""
    for s in sessions:
        VoiceSession.objects.filter(pk=s.pk).update(connected_at=s.started_at)
        CallRecording.objects.create(session=s, chunk_count=1, size_bytes=100, duration_ms=4000,
                                     delete_after=s.started_at + timedelta(days=1))
        SessionEvent.objects.bulk_create([
            SessionEvent(session=s, seq=1, direction="from_openai", type="input_audio_buffer.speech_stopped",
                         payload={"item_id": "it0"}, created_at=s.started_at + timedelta(seconds=1)),
            SessionEvent(session=s, seq=2, direction="from_openai", type="output_audio_buffer.started",
                         payload={"response_id": "r1"}, created_at=s.started_at + timedelta(seconds=1.7)),
        ])
        TranscriptItem.objects.filter(session=s, item_id="it1").update(response_id="r1")
        ResponseUsage.objects.create(session=s, response_id="r1", total_tokens=10)


def test_a_text_export_and_an_empty_export_are_well_formed(superuser: User, owner: User,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(voice_admin, "EXPORT_CHUNK", 2)
    client = _client(superuser)
    sessions = _sessions(owner, 3, items=2)
    _record(sessions[:1])
    response, body = _export(client, "text", sessions)
    assert response["Content-Type"].startswith("text/plain")
    text = body.decode()
    assert (f"Recording: http://testserver/voice/sessions/{sessions[0].pk}/recording.webm (WebM, 0:04; the user "
            "left, the model right)\nAnswers: after 0.7 s (median of 1), slowest 0.7 s\n") in text
    assert text.count("Recording: none\n") == 2
    assert text.count("=" * 60) == 2 and text.count("Session ") == 3
    assert "user: line 0 of rtc_2\nassistant: line 1 of rtc_2" in text
    stream = voice_admin._json_chunks(VoiceSession.objects.none())
    assert json.loads("".join(stream)) == []


def test_select_all_exports_every_session_of_the_filtered_list(superuser: User, owner: User, colleague: User) -> None:
    _sessions(owner, 7, items=1)
    _sessions(colleague, 2, items=1, offset=10)
    response = _client(superuser).post(f"{SESSIONS}?q=alice", {
        "action": "export_json", "select_across": "1", "index": "0",
        "_selected_action": [VoiceSession.objects.first().pk]})
    data = json.loads(b"".join(response.streaming_content))
    assert len(data) == 7 and {d["user"] for d in data} == {"alice"}


# --- the dashboard's snapshots ----------------------------------------------------------------------------


def test_a_long_sessions_snapshot_holds_its_latest_rows_and_says_what_it_left_out(
        staff: User, owner: User, long_session: VoiceSession) -> None:
    SessionEvent.objects.bulk_create(SessionEvent(session=long_session, seq=n, direction="internal", type="t")
                                     for n in range(1, 251))
    frame = snapshots.session_snapshot(str(long_session.pk), staff)
    assert frame is not None
    assert [i["item_id"] for i in frame["items"]] == [f"it{n}" for n in range(150, 250)]
    assert [e["seq"] for e in frame["events"]] == list(range(51, 251))
    assert len(frame["tool_calls"]) == 45 and frame["earlier"] == {"items": 150, "tool_calls": 0, "events": 50}
    assert frame["transcript_url"] == f"{SESSIONS}{long_session.pk}/change/"
    own = snapshots.session_snapshot(str(long_session.pk), owner)
    assert own is not None and own["transcript_url"] == long_session.get_absolute_url()
    assert snapshots.session_snapshot(str(uuid.uuid4()), staff) is None


def test_the_live_list_has_no_silent_cap(owner: User) -> None:
    _sessions(owner, 520, items=0, status="active")
    _sessions(owner, 5, items=0, status="ended", offset=600)
    assert len(snapshots.live_sessions()) == 520


# --- the schema: orderings, indexes, the text index ------------------------------------------------------


@pytest.mark.parametrize("model", [SessionEvent, TranscriptItem, ToolCall, ResponseUsage])
def test_child_rows_are_ordered_without_joining_their_session(model: Any) -> None:
    sql = str(model.objects.all().query)
    assert "JOIN" not in sql and "voice_voicesession" not in sql


def test_no_index_duplicates_the_leading_column_of_another() -> None:
    with connection.cursor() as cursor:
        for model in (VoiceSession, SessionEvent, TranscriptItem, ToolCall, ResponseUsage):
            table = model._meta.db_table
            constraints = connection.introspection.get_constraints(cursor, table)
            indexed = [c["columns"] for c in constraints.values() if c["index"] or c["unique"]]
            for columns in indexed:
                if len(columns) == 1 and columns != ["id"]:
                    longer = [other for other in indexed if len(other) > 1 and other[0] == columns[0]]
                    assert not longer, f"{table}: index on {columns} duplicates {longer}"


def test_transcript_search_has_a_trigram_index_on_postgresql_and_a_plain_scan_elsewhere(owner: User) -> None:
    with connection.cursor() as cursor:
        indexes = connection.introspection.get_constraints(cursor, TranscriptItem._meta.db_table)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'transcript_text_trgm'")
            (definition,) = cursor.fetchone()
        assert "gin" in definition.lower() and "gin_trgm_ops" in definition and "upper(text)" in definition.lower()
    else:
        assert "transcript_text_trgm" not in indexes  # no such index type: the search scans
    (session,) = _sessions(owner, 1, items=1)
    assert list(VoiceSession.objects.search("LINE 0")) == [session]
