"""After the call: users see their own sessions; admins read, search and export transcripts."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from voice.models import ToolCall, TranscriptItem, VoiceConfig, VoiceSession

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(owner: User) -> VoiceSession:
    config = VoiceConfig.objects.get(slug="default")
    session = VoiceSession.objects.create(user=owner, config=config, config_name=config.name, model=config.model,
                                          status="ended", end_reason="hangup", call_id="rtc_review")
    TranscriptItem.objects.create(session=session, item_id="i2", previous_item_id="i1", role="assistant",
                                  text="Paris is lovely <b>in spring</b>.", status="completed")
    TranscriptItem.objects.create(session=session, item_id="i1", role="user", text="Tell me about Paris",
                                  status="completed")
    ToolCall.objects.create(session=session, call_id="c1", name="current_time", arguments={"timezone": "UTC"},
                            output='{"time": "12:00"}', status="succeeded", duration_ms=3)
    return session


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_my_sessions_lists_only_my_own(owner: User, colleague: User, conversation: VoiceSession) -> None:
    VoiceSession.objects.create(user=colleague, config_name="Bob's secret config")
    page = _client(owner).get("/voice/sessions/")
    assert page.status_code == 200
    assert list(page.context["sessions"]) == [conversation]
    assert b"Bob's secret config" not in page.content
    assert _client(colleague).get("/voice/sessions/").context["sessions"][0].config_name == "Bob's secret config"


def test_the_transcript_page_shows_the_chat_in_order_and_escaped(owner: User, conversation: VoiceSession) -> None:
    page = _client(owner).get(f"/voice/sessions/{conversation.pk}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert body.index("Tell me about Paris") < body.index("Paris is lovely")
    assert "&lt;b&gt;in spring&lt;/b&gt;" in body
    assert "current_time" in body


def test_someone_elses_transcript_is_a_404(stranger: User, staff: User, conversation: VoiceSession) -> None:
    assert _client(stranger).get(f"/voice/sessions/{conversation.pk}/").status_code == 404
    # Even staff read other people's transcripts in the admin, with its permissions, not here.
    assert _client(staff).get(f"/voice/sessions/{conversation.pk}/").status_code == 404
    assert Client().get(f"/voice/sessions/{conversation.pk}/").status_code == 302


def test_the_admin_session_page_shows_the_transcript_tool_calls_and_usage(superuser: User,
                                                                          conversation: VoiceSession) -> None:
    page = _client(superuser).get(f"/admin/voice/voicesession/{conversation.pk}/change/")
    body = page.content.decode()
    assert body.index("Tell me about Paris") < body.index("Paris is lovely")
    assert "&lt;b&gt;in spring&lt;/b&gt;" in body
    assert "current_time" in body and "Response usages" in body


def test_the_admin_searches_transcript_text(superuser: User, conversation: VoiceSession) -> None:
    VoiceSession.objects.create(user=superuser)
    client = _client(superuser)
    found = client.get("/admin/voice/voicesession/", {"q": "lovely"})
    assert list(found.context["cl"].result_list) == [conversation]
    assert client.get("/admin/voice/voicesession/", {"q": "Paris"}).context["cl"].result_count == 1


def test_the_admin_exports_selected_transcripts_as_json_and_text(superuser: User,
                                                                  conversation: VoiceSession) -> None:
    client = _client(superuser)
    exported = client.post("/admin/voice/voicesession/", {"action": "export_json",
                                                          "_selected_action": [conversation.pk]})
    assert exported["Content-Type"] == "application/json"
    assert exported.streaming  # never one string in memory for the whole selection
    data = json.loads(exported.getvalue())
    assert [i["text"] for i in data[0]["transcript"]] == ["Tell me about Paris", "Paris is lovely <b>in spring</b>."]
    assert data[0]["tool_calls"][0]["name"] == "current_time"
    text = client.post("/admin/voice/voicesession/", {"action": "export_text", "_selected_action": [conversation.pk]})
    assert text["Content-Type"].startswith("text/plain")
    assert "user: Tell me about Paris\nassistant: Paris is lovely" in text.getvalue().decode()


def test_end_stale_sessions_command_ends_live_sessions_nobody_serves(owner: User,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    stale = VoiceSession.objects.create(user=owner, status="active",
                                        heartbeat_at=timezone.now() - timedelta(hours=1))
    served = VoiceSession.objects.create(user=owner, status="active")  # its process renews the heartbeat
    call_command("end_stale_sessions")
    stale.refresh_from_db()
    served.refresh_from_db()
    assert (stale.status, stale.end_reason) == ("ended", "server_lost")
    assert served.status == "active"
    assert "Ended 1 stale session(s)." in capsys.readouterr().out
    call_command("end_stale_sessions")  # safe to run again at every start-up
    assert "Ended 0 stale session(s)." in capsys.readouterr().out


def test_bootstrap_demo_creates_the_demo_user_and_admin(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_USER", "tryme")
    call_command("bootstrap_demo")
    out = capsys.readouterr().out
    assert "'tryme'" in out and "'admin'" in out
    assert User.objects.get(username="admin").is_superuser
    assert not User.objects.get(username="tryme").is_staff
    assert Client().login(username="tryme", password="demo-voice-2026")
