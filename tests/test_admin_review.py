"""Admins reviewing sessions: durations, tokens and cost that read as such, raw events one click away and
readable, counts that are true (or say they stopped), and queries that do not grow with the rows."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from voice.admin import _clock, _cost, _duration
from voice.models import ResponseUsage, SessionEvent, VoiceConfig, VoiceSession

pytestmark = pytest.mark.django_db

SESSIONS = "/admin/voice/voicesession/"
EVENTS = "/admin/voice/sessionevent/"


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _session(user: User, *, seconds: float | None = 108, cost: Decimal | None = Decimal("0.012345"),
             tokens: int = 12_345, status: str = "ended", events: int = 0) -> VoiceSession:
    config = VoiceConfig.objects.get(slug="default")
    session = VoiceSession.objects.create(user=user, config=config, config_name=config.name, model=config.model,
                                          status=status, end_reason="hangup" if status == "ended" else "",
                                          total_tokens=tokens, cost_usd=cost, call_id="rtc_x")
    started = timezone.now() - timedelta(seconds=seconds or 30)
    VoiceSession.objects.filter(pk=session.pk).update(
        started_at=started, ended_at=started + timedelta(seconds=seconds) if seconds is not None else None)
    SessionEvent.objects.bulk_create(
        SessionEvent(session=session, seq=i, direction="internal", type="response.done",
                     payload={"type": "response.done", "response": {"id": f"resp_{i}", "status": "completed"}})
        for i in range(events))
    session.refresh_from_db()
    return session


def test_costs_read_as_dollars_to_a_hundredth_of_a_cent_and_unpriced_stays_unpriced() -> None:
    assert ">$0.0123<" in _cost(Decimal("0.012345")) and 'title="0.012345 USD"' in _cost(Decimal("0.012345"))
    assert ">$1,234.5000<" in _cost(Decimal("1234.5"))
    assert ">&lt;$0.0001<" in _cost(Decimal("0.00004"))
    assert ">$0.0000<" in _cost(Decimal("0"))
    assert ">unpriced<" in _cost(None)


def test_durations_read_as_time() -> None:
    assert [_duration(s) for s in (None, 0.4, 42, 187, 3725)] == ["—", "0 s", "42 s", "3 min 07 s", "1 h 02 min"]
    assert [_clock(s) for s in (None, 42, 187, 3725)] == ["—", "0:42", "3:07", "1:02:05"]


def test_the_session_list_shows_duration_tokens_and_cost_in_few_columns(superuser: User, owner: User) -> None:
    _session(owner, seconds=108, cost=Decimal("0.012345"), tokens=12_345)
    _session(owner, seconds=30, cost=None, tokens=7)
    _session(owner, seconds=None, status="active", tokens=0, cost=Decimal("0"))
    response = _client(superuser).get(SESSIONS)
    assert response.status_code == 200
    body = response.content.decode()
    for text in (">1:48<", "12,345", ">$0.0123<", ">unpriced<", "still running", "column-tokens", "column-cost",
                 "column-length", "voice/admin.css"):
        assert text in body, text
    columns = response.context["cl"].list_display
    assert len(columns) <= 8, columns  # fits beside the filters at 1280 px (checked in Chromium too)


def test_the_session_list_runs_the_same_queries_for_3_or_30_sessions(superuser: User, owner: User) -> None:
    client = _client(superuser)
    for _ in range(3):
        _session(owner)
    with CaptureQueriesContext(connection) as few:
        client.get(SESSIONS)
    for _ in range(27):
        _session(owner)
    with CaptureQueriesContext(connection) as many:
        assert client.get(SESSIONS).status_code == 200
    assert len(many) == len(few), [q["sql"] for q in many]


def test_the_session_page_shows_its_duration_cost_and_raw_events_and_links_to_the_event_list(
    superuser: User, owner: User,
) -> None:
    session = _session(owner, seconds=187, events=3)
    ResponseUsage.objects.create(session=session, response_id="resp_1", status="completed", total_tokens=10,
                                 cost_usd=Decimal("0.00123"))
    client = _client(superuser)
    body = client.get(f"{SESSIONS}{session.pk}/change/").content.decode()
    assert "3 min 07 s" in body
    assert f'href="{EVENTS}?q={session.pk}"' in body
    assert ">$0.0012<" in body  # the usage row too
    # The raw events, folded, their payloads indented.
    assert 'id="events-group"' in body
    assert body.count('<details class="payload">') == 3
    assert "{\n  &quot;type&quot;: &quot;response.done&quot;,\n  &quot;response&quot;: {" in body


def test_the_session_page_runs_the_same_queries_for_3_or_60_raw_events(superuser: User, owner: User) -> None:
    client = _client(superuser)
    few_events, many_events = _session(owner, events=3), _session(owner, events=60)
    with CaptureQueriesContext(connection) as few:
        client.get(f"{SESSIONS}{few_events.pk}/change/")
    with CaptureQueriesContext(connection) as many:
        body = client.get(f"{SESSIONS}{many_events.pk}/change/").content.decode()
    assert len(many) == len(few)
    assert body.count('<details class="payload">') == 20  # a page of them
    assert "events_page=2" in body


def test_the_events_of_a_session_say_whose_they_are_and_link_back(superuser: User, owner: User) -> None:
    session = _session(owner, events=4)
    other = _session(owner, events=2)
    response = _client(superuser).get(EVENTS, {"q": str(session.pk)})
    body = response.content.decode()
    assert response.context["cl"].result_count == 4
    assert f"Events of session {session.pk}" in body
    assert f'<a href="{SESSIONS}{session.pk}/change/">Back to the session</a>' in body
    assert f"{SESSIONS}{other.pk}/change/" not in body
    # Every row links to its session, and the unfiltered list says no such thing.
    assert body.count(f'href="{SESSIONS}{session.pk}/change/"') == 5
    assert "Events of session" not in _client(superuser).get(EVENTS).content.decode()


def test_the_event_list_runs_the_same_queries_for_5_or_80_events(superuser: User, owner: User) -> None:
    client = _client(superuser)
    session = _session(owner, events=5)
    with CaptureQueriesContext(connection) as few:
        client.get(EVENTS)
    SessionEvent.objects.bulk_create(SessionEvent(session=session, seq=i, direction="internal", type="x",
                                                  payload={}) for i in range(5, 80))
    with CaptureQueriesContext(connection) as many:
        assert client.get(EVENTS).status_code == 200
    assert len(many) == len(few)


def test_an_event_page_shows_its_payload_indented_and_links_to_its_session(superuser: User, owner: User) -> None:
    session = _session(owner, events=1)
    event = SessionEvent.objects.get(session=session)
    body = _client(superuser).get(f"{EVENTS}{event.pk}/change/").content.decode()
    assert '<details class="payload" open>' in body
    assert "&quot;response&quot;: {\n    &quot;id&quot;: &quot;resp_0&quot;," in body
    assert f'href="{SESSIONS}{session.pk}/change/"' in body and f'href="{EVENTS}?q={session.pk}"' in body


def test_the_event_count_is_the_true_count_not_the_highest_id(superuser: User, owner: User) -> None:
    gone = _session(owner, events=300)
    kept = _session(owner, events=7)
    gone.delete()  # its events go with it: the highest id is far above the rows left
    assert SessionEvent.objects.order_by("-id").first().pk > 300  # type: ignore[union-attr]
    response = _client(superuser).get(EVENTS)
    cl = response.context["cl"]
    assert cl.result_count == 7 and cl.paginator.num_pages == 1
    assert not cl.paginator.is_estimate and not cl.next_page_url
    assert "7 session events" in response.content.decode() and "about" not in response.content.decode()
    assert kept.pk


@pytest.mark.parametrize(("rows", "next_page"), [(1_100, False), (1_150, True)])
def test_past_the_counting_cap_the_list_says_more_than_and_offers_a_next_page_only_if_there_is_one(
    superuser: User, owner: User, rows: int, next_page: bool,
) -> None:
    _session(owner, events=rows)
    client = _client(superuser)
    with CaptureQueriesContext(connection) as queries:
        first = client.get(EVENTS)
    assert "more than 1000 session events" in first.content.decode()
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "voice_sessionevent" in q["sql"]]
    assert counts and all("LIMIT" in sql.upper() for sql in counts)  # bounded, never the whole table
    last_counted = client.get(EVENTS, {"p": "11"})  # rows 1,001-1,100: a full page
    assert len(last_counted.context["cl"].result_list) == 100
    assert bool(last_counted.context["cl"].next_page_url) is next_page
