"""What people read on the pages: sentences instead of codes, one time format, the transcript page's
facts and downloads, the chat page's data, the favicon, and the dashboard's recently ended sessions."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from voice import snapshots, wording
from voice.models import ToolCall, TranscriptItem, VoiceConfig, VoiceSession

pytestmark = pytest.mark.django_db

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _visible_text(html: str) -> str:
    """What a person reads: no tags, attributes, scripts or styles."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


@pytest.fixture
def failed_call(owner: User) -> VoiceSession:
    config = VoiceConfig.objects.get(slug="default")
    start = timezone.now() - timedelta(minutes=3)
    session = VoiceSession.objects.create(
        user=owner, config=config, config_name=config.name, model=config.model, status="failed",
        end_reason="upstream_error", call_id="rtc_hidden_call_id", started_at=start, connected_at=start,
        ended_at=start + timedelta(seconds=125), total_tokens=321, cost_usd=Decimal("0.012345"))
    TranscriptItem.objects.create(session=session, item_id="i1", role="user", text="What time is it?",
                                  status="completed", created_at=start + timedelta(seconds=2))
    TranscriptItem.objects.create(session=session, item_id="i2", previous_item_id="i1", kind="function_call",
                                  name="current_time", text='{"timezone": "UTC"}', status="completed",
                                  created_at=start + timedelta(seconds=3))
    TranscriptItem.objects.create(session=session, item_id="i3", previous_item_id="i2",
                                  kind="function_call_output", text='{"time": "12:00", "utc_offset": "+0000"}',
                                  status="completed", created_at=start + timedelta(seconds=4))
    TranscriptItem.objects.create(session=session, item_id="i4", previous_item_id="i3", role="assistant",
                                  text="It is noon.", status="truncated", created_at=start + timedelta(seconds=5))
    ToolCall.objects.create(session=session, call_id="call_hidden", name="current_time",
                            arguments={"timezone": "UTC"}, output='{"time": "12:00"}', status="succeeded",
                            duration_ms=7)
    return session


# --- wording --------------------------------------------------------------------------------------------


def test_every_end_reason_the_server_records_reads_as_a_sentence() -> None:
    for reason in ("hangup", "disconnect", "server_shutdown", "server_lost", "max_duration", "upstream_error",
                   "client_error:microphone", "client_error:sdp", "client_error:ice", "client_error:datachannel"):
        text = wording.end_reason_text(reason)
        assert text.endswith(".") and text[0].isupper(), (reason, text)
        assert "_" not in text and ":" not in text, (reason, text)


def test_an_end_reason_nobody_worded_yet_never_shows_its_code() -> None:
    assert wording.end_reason_text("sideband_gave_up", "failed") == "The call failed."
    assert wording.end_reason_text("something_new") == "The call ended."
    assert wording.end_reason_text("client_error:camera") == "The call could not continue in the browser."
    assert wording.end_reason_text("") == ""


def test_times_have_one_format_with_the_time_zone(settings: object) -> None:
    moment = datetime(2026, 11, 30, 14, 5, 9, tzinfo=UTC)
    assert wording.moment(moment) == "2026-11-30 14:05 UTC"
    assert wording.moment(moment, wording.TIME_OF_DAY) == "14:05:09 UTC"
    settings.TIME_ZONE = "Europe/Paris"  # type: ignore[attr-defined]
    assert wording.moment(moment) == "2026-11-30 15:05 CET"


def test_durations_read_as_minutes_and_seconds() -> None:
    assert wording.duration(65.9) == "1:05"
    assert wording.duration(3723) == "1:02:03"
    assert wording.duration(None) == ""


def test_tool_output_reads_as_pairs_not_json() -> None:
    assert wording.readable_output('{"time": "12:00", "utc_offset": "+0000"}') == "time: 12:00 · utc offset: +0000"
    assert wording.readable_output('["a", 1, true, null]') == "a, 1, yes, none"
    assert wording.readable_output("plain words") == "plain words"
    assert wording.readable_output("{}") == "(nothing)"
    assert wording.readable_arguments({"timezone": "UTC"}) == "timezone: UTC"


# --- My sessions and the transcript page ---------------------------------------------------------------


def test_my_sessions_say_why_a_call_ended_in_words_never_in_codes(owner: User, failed_call: VoiceSession) -> None:
    body = _client(owner).get("/voice/sessions/").content.decode()
    text = _visible_text(body)
    assert "The voice service failed during the call." in text
    assert "upstream_error" not in body
    assert "2:05" in text  # the duration, as m:ss
    assert wording.moment(failed_call.started_at) in text and "UTC" in text
    assert 'data-label="Status"' in body  # each cell says what it is when the table stacks on a phone


def test_the_transcript_page_has_duration_times_a_back_link_and_downloads(owner: User,
                                                                         failed_call: VoiceSession) -> None:
    body = _client(owner).get(failed_call.get_absolute_url()).content.decode()
    text = _visible_text(body)
    assert 'href="/voice/sessions/"' in body and "Back to my sessions" in text
    assert "2:05" in text
    assert wording.moment(failed_call.started_at + timedelta(seconds=2), wording.TIME_OF_DAY) in text
    assert f'href="/voice/sessions/{failed_call.pk}/conversation.txt"' in body
    assert f'href="/voice/sessions/{failed_call.pk}/conversation.json"' in body
    # One label for the user's lines; tool output as words; statuses and reasons as sentences.
    assert re.search(r"\bYou\b", text) and not re.search(r"\buser\b", text)
    assert "time: 12:00 · utc offset: +0000" in text and '{"time"' not in text
    assert "The voice service failed during the call." in text and "upstream_error" not in body
    assert "interrupted" in text


def test_people_never_read_their_sessions_id_or_call_id(owner: User, failed_call: VoiceSession) -> None:
    client = _client(owner)
    for url in ("/voice/sessions/", failed_call.get_absolute_url(), "/voice/"):
        body = client.get(url).content.decode()
        text = _visible_text(body)
        assert not UUID.search(text), url
        assert "rtc_hidden_call_id" not in body and "call_hidden" not in body, url


def test_the_conversation_downloads_as_text(owner: User, failed_call: VoiceSession) -> None:
    response = _client(owner).get(f"/voice/sessions/{failed_call.pk}/conversation.txt")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response["Content-Disposition"].startswith('attachment; filename="conversation-2')
    text = response.content.decode()
    assert "Lasted 2:05 · Failed: The voice service failed during the call." in text
    at = wording.moment(failed_call.started_at + timedelta(seconds=2), wording.TIME_OF_DAY)
    assert f"[{at}] You: What time is it?" in text
    assert "Tool output: time: 12:00 · utc offset: +0000" in text
    assert "Assistant: It is noon. [interrupted]" in text
    assert "rtc_hidden_call_id" not in text and str(failed_call.pk) not in text


def test_the_conversation_downloads_as_json(owner: User, failed_call: VoiceSession) -> None:
    response = _client(owner).get(f"/voice/sessions/{failed_call.pk}/conversation.json")
    assert response["Content-Type"].startswith("application/json")
    data = json.loads(response.content)
    assert data["duration_seconds"] == 125.0 and data["cost_usd"] == "0.012345"
    assert data["ended_because"] == "The voice service failed during the call."
    assert [line["speaker"] for line in data["transcript"]] == ["You", "Tool call", "Tool output", "Assistant"]
    assert data["transcript"][3]["interrupted"] is True
    assert data["tool_calls"][0]["name"] == "current_time"
    raw = response.content.decode()
    assert "rtc_hidden_call_id" not in raw and str(failed_call.pk) not in raw


def test_a_tool_call_reads_alike_on_the_dashboard_in_the_admins_export_and_in_the_download(
        owner: User, superuser: User, failed_call: VoiceSession) -> None:
    failed_call.tool_calls.update(status=ToolCall.Status.TIMED_OUT)
    tool = failed_call.tool_calls.get()
    expected = {"call_id": "call_hidden", "name": "current_time", "arguments": {"timezone": "UTC"},
                "output": '{"time": "12:00"}', "status": "timed_out", "started_at": tool.started_at.isoformat(),
                "duration_ms": 7}
    snapshot = snapshots.session_snapshot(str(failed_call.pk), superuser)
    assert snapshot is not None and snapshot["tool_calls"] == [expected]
    exported = _client(superuser).post("/admin/voice/voicesession/", {"action": "export_json",
                                                                      "_selected_action": [failed_call.pk]})
    record = json.loads(exported.getvalue())[0]
    assert record["tool_calls"] == [expected]
    assert {k: record[k] for k in snapshot["session"]} == snapshot["session"] == failed_call.to_dict()
    # The user's own download: the same call without OpenAI's id, its status in words.
    download = json.loads(_client(owner).get(f"/voice/sessions/{failed_call.pk}/conversation.json").content)
    assert download["tool_calls"] == [{k: v for k, v in expected.items() if k != "call_id"} | {"status": "timed out"}]
    assert download["started_at"] == failed_call.started_at.isoformat() and download["cost_usd"] == "0.012345"


def test_only_the_owner_downloads_a_conversation(stranger: User, staff: User, failed_call: VoiceSession) -> None:
    for user in (stranger, staff):
        assert _client(user).get(f"/voice/sessions/{failed_call.pk}/conversation.txt").status_code == 404
    assert Client().get(f"/voice/sessions/{failed_call.pk}/conversation.json").status_code == 302
    assert _client(failed_call.user).get(f"/voice/sessions/{failed_call.pk}/conversation.html").status_code == 404


def test_the_chat_page_reads_a_calls_recorded_cost_and_only_its_owner_may(owner: User, stranger: User,
                                                                          failed_call: VoiceSession) -> None:
    url = f"/voice/sessions/{failed_call.pk}/totals"
    assert _client(owner).get(url).json() == {"status": "failed", "turns": 0, "total_tokens": 321,
                                              "cost_usd": "0.012345"}
    assert _client(stranger).get(url).status_code == 404
    VoiceSession.objects.filter(pk=failed_call.pk).update(cost_usd=None)
    assert _client(owner).get(url).json()["cost_usd"] is None  # unpriced, never $0


# --- the chat page ---------------------------------------------------------------------------------------


def _chat_data(user: User) -> dict[str, object]:
    body = _client(user).get("/voice/").content.decode()
    match = re.search(r'<script id="chat-data" type="application/json">(.*?)</script>', body, re.S)
    assert match, "the chat page carries its data for chat.js"
    return json.loads(match.group(1))


def test_the_chat_page_shows_ids_to_staff_only(owner: User, staff: User) -> None:
    assert _chat_data(owner)["show_ids"] is False
    assert _chat_data(staff)["show_ids"] is True
    data = _chat_data(owner)
    assert data["end_reasons"]["upstream_error"] == wording.END_REASONS["upstream_error"]  # type: ignore[index]


def test_the_chat_page_gets_its_urls_from_the_server(owner: User) -> None:
    data = _chat_data(owner)
    assert data["socket_path"] == "/ws/voice/"
    any_session = str(data["any_session"])
    assert data["totals_url"] == f"/voice/sessions/{any_session}/totals"


def test_the_chat_pages_live_regions_are_in_the_page_before_they_have_text(owner: User) -> None:
    body = _client(owner).get("/voice/").content.decode()
    for element in ("error", "notice", "tool-activity"):
        tag = re.search(rf'<[a-z]+ id="{element}"[^>]*>', body)
        assert tag and " hidden" not in tag.group(0) and "role=" in tag.group(0), element
    transcript = re.search(r'<ul id="transcript"[^>]*>', body)
    assert transcript and "aria-live" not in transcript.group(0) and 'tabindex="0"' in transcript.group(0)
    assert 'id="announcer"' in body and 'id="mic"' in body and 'id="say"' in body and 'id="call-timer"' in body


# --- favicon ---------------------------------------------------------------------------------------------


def test_every_page_names_its_favicon_and_favicon_ico_leads_to_it(owner: User) -> None:
    body = _client(owner).get("/voice/").content.decode()
    assert '<link rel="icon" href="/static/voice/favicon.svg" type="image/svg+xml">' in body
    response = Client().get("/favicon.ico")
    assert response.status_code == 302 and response["Location"] == "/static/voice/favicon.svg"
    assert "max-age=86400" in response["Cache-Control"]


# --- the dashboard's recently ended sessions ----------------------------------------------------------


def _dashboard_data(user: User) -> dict[str, object]:
    body = _client(user).get("/voice/dashboard/").content.decode()
    match = re.search(r'<script id="dashboard-data" type="application/json">(.*?)</script>', body, re.S)
    assert match
    return json.loads(match.group(1))


def test_the_dashboard_gets_its_urls_from_the_server(staff: User) -> None:
    data = _dashboard_data(staff)
    assert data["socket_path"] == "/ws/dashboard/" and data["login_url"] == "/accounts/login/"
    assert data["any_session"] == "00000000-0000-0000-0000-000000000000"


def test_the_dashboard_opens_with_the_sessions_that_ended_before_it(superuser: User, staff: User, owner: User,
                                                                    failed_call: VoiceSession) -> None:
    live = VoiceSession.objects.create(user=owner, status="active")
    data = _dashboard_data(superuser)
    recent = data["recent"]
    assert [s["id"] for s in recent] == [str(failed_call.pk)]  # type: ignore[index]
    assert str(live.pk) not in json.dumps(recent)
    # An admin link for those who may read the record in the admin; none for those who may not.
    assert data["admin_url"] == "/admin/voice/voicesession/00000000-0000-0000-0000-000000000000/change/"
    assert _dashboard_data(staff)["admin_url"] == ""
    assert data["end_reasons"]["hangup"] == "The user hung up."  # type: ignore[index]


def test_the_dashboards_recent_list_is_bounded_and_oldest_first(superuser: User, owner: User) -> None:
    start = timezone.now() - timedelta(hours=1)
    for n in range(25):
        VoiceSession.objects.create(user=owner, status="ended", started_at=start + timedelta(minutes=n),
                                    ended_at=start + timedelta(minutes=n, seconds=30))
    recent = _dashboard_data(superuser)["recent"]
    assert len(recent) == 20  # type: ignore[arg-type]
    ends = [s["ended_at"] for s in recent]  # type: ignore[union-attr]
    assert ends == sorted(ends)  # the page puts each on top: the newest ends up first
