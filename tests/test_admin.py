"""Admin pages: who may see and do what."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from voice.models import SessionEvent, VoiceConfig, VoiceSession

pytestmark = pytest.mark.django_db

PAGES = [
    "/admin/",
    "/admin/voice/voiceconfig/",
    "/admin/voice/voiceconfig/{config}/change/",
    "/admin/voice/voiceconfig/{config}/history/",
    "/admin/voice/voicesession/",
    "/admin/voice/voicesession/{session}/change/",
    "/admin/voice/sessionevent/",
]


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def session(owner: User) -> VoiceSession:
    config = VoiceConfig.objects.get(slug="default")
    return VoiceSession.objects.create(user=owner, config=config, config_name=config.name, model=config.model,
                                       call_id="rtc_abc123")


def _urls(session: VoiceSession) -> list[str]:
    config = VoiceConfig.objects.get(slug="default")
    return [p.format(config=config.pk, session=session.pk) for p in PAGES]


def test_a_superuser_sees_every_admin_page(superuser: User, session: VoiceSession) -> None:
    client = _client(superuser)
    for url in [*_urls(session), "/admin/voice/modelprice/"]:
        assert client.get(url).status_code == 200, url


def test_an_operator_sees_every_admin_page(operator: User, session: VoiceSession) -> None:
    client = _client(operator)
    for url in _urls(session):
        assert client.get(url).status_code == 200, url


def test_a_plain_user_is_sent_to_the_admin_login(owner: User, session: VoiceSession) -> None:
    client = _client(owner)
    for url in _urls(session):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/")


def test_the_operators_group_has_exactly_the_intended_permissions() -> None:
    group = Group.objects.get(name="Voice operators")
    codenames = set(group.permissions.values_list("codename", flat=True))
    assert codenames == {
        "add_voiceconfig", "change_voiceconfig", "view_voiceconfig", "view_historicalvoiceconfig",
        "view_voicesession", "view_sessionevent", "view_transcriptitem", "view_toolcall", "view_responseusage",
        "view_modelprice",
    }
    assert not any(c.startswith("delete_") for c in codenames)


def test_an_operator_cannot_delete_a_session_or_a_config(operator: User, session: VoiceSession) -> None:
    client = _client(operator)
    config = VoiceConfig.objects.get(slug="default")
    assert client.post(f"/admin/voice/voicesession/{session.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.post(f"/admin/voice/voiceconfig/{config.pk}/delete/", {"post": "yes"}).status_code == 403
    assert VoiceSession.objects.filter(pk=session.pk).exists()
    assert VoiceConfig.objects.filter(pk=config.pk).exists()


def test_an_operator_can_change_a_config(operator: User) -> None:
    client = _client(operator)
    config = VoiceConfig.objects.get(slug="default")
    page = client.get(f"/admin/voice/voiceconfig/{config.pk}/change/")
    assert b'name="voice"' in page.content
    assert b"Save" in page.content


def test_sessions_are_read_only_even_for_a_superuser(superuser: User, session: VoiceSession) -> None:
    client = _client(superuser)
    page = client.get(f"/admin/voice/voicesession/{session.pk}/change/")
    assert b'name="status"' not in page.content
    assert client.get("/admin/voice/voicesession/add/").status_code == 403


def test_the_session_list_filters_and_searches(superuser: User, session: VoiceSession) -> None:
    client = _client(superuser)
    page = client.get("/admin/voice/voicesession/", {"q": "rtc_abc123"})
    assert page.status_code == 200
    assert page.context["cl"].result_count == 1
    assert client.get("/admin/voice/voicesession/", {"q": "alice"}).context["cl"].result_count == 1
    assert client.get("/admin/voice/voicesession/", {"q": str(session.pk)}).context["cl"].result_count == 1
    assert client.get("/admin/voice/voicesession/", {"q": "nobody"}).context["cl"].result_count == 0
    filtered = client.get("/admin/voice/voicesession/", {"status__exact": "ended"})
    assert filtered.context["cl"].result_count == 0
    for params in ({"model": "gpt-realtime"}, {"config__id__exact": session.config_id}):
        assert client.get("/admin/voice/voicesession/", params).status_code == 200


def test_the_event_log_admin_never_counts_the_whole_table(superuser: User, session: VoiceSession) -> None:
    SessionEvent.objects.bulk_create(
        SessionEvent(session=session, seq=i, direction="from_browser", type="response.done", payload={})
        for i in range(5)
    )
    client = _client(superuser)
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/admin/voice/sessionevent/")
    assert response.status_code == 200
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "voice_sessionevent" in q["sql"]]
    # At most a capped count (voice/paging.py): never COUNT(*) over the table.
    assert all("LIMIT 1001" in sql.upper() for sql in counts), counts
    assert response.context["cl"].result_count == 5


def test_the_admin_says_which_mode_each_session_ran_in_and_filters_by_it(superuser: User, owner: User) -> None:
    config = VoiceConfig.objects.get(slug="default")
    assert config.call_mode == VoiceConfig.CallMode.SERVER  # the migration moved existing configs
    VoiceSession.objects.create(user=owner, config=config, mode="server", call_id="rtc_server1")
    VoiceSession.objects.create(user=owner, config=config, mode="relay", call_id="rtc_relay1")
    client = _client(superuser)
    page = client.get("/admin/voice/voicesession/").content.decode()
    assert "Server-controlled" in page and "Relay (legacy)" in page  # the column and the filter
    assert [s.call_id for s in client.get("/admin/voice/voicesession/?mode__exact=server").context["cl"].result_list
            ] == ["rtc_server1"]
    form = client.get(f"/admin/voice/voiceconfig/{config.pk}/change/").content.decode()
    assert 'name="call_mode"' in form and 'value="relay"' in form
