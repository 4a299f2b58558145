"""Models OpenAI is shutting down: one table, shown to operators in the admin and at start-up, and a
session on a model past its date is refused before any call is made."""

from __future__ import annotations

from datetime import date
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.core import checks
from django.test import Client

from tests.ws_helpers import disconnect_peers, open_peer  # noqa: F401  (disconnect_peers: autouse)
from voice import catalog
from voice.checks import retiring_models
from voice.models import VoiceConfig, VoiceSession
from voice.sessions import SessionRefused, start_session

pytestmark = pytest.mark.django_db

BEFORE = date(2026, 12, 1)
REALTIME_GONE = date(2027, 1, 20)
ALL_GONE = date(2027, 2, 26)


def _config(**fields: object) -> VoiceConfig:
    values: dict[str, object] = {"name": "Legacy line", "slug": "legacy"}
    values.update(fields)
    return VoiceConfig.objects.create(**values)


def test_the_table_holds_the_announced_dates_and_replacements() -> None:
    table = {m.name: (m.kind, m.shutdown, m.replacement) for m in catalog.MODELS}
    assert table["gpt-realtime"] == ("realtime", REALTIME_GONE, "gpt-realtime-2.1")
    assert table["gpt-realtime-mini"] == ("realtime", REALTIME_GONE, "gpt-realtime-2.1-mini")
    for name in ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-transcribe-diarize"):
        assert table[name][:2] == ("transcription", ALL_GONE)
        assert table[table[name][2]][1] is None  # each replacement is itself current
    for name in ("gpt-realtime-2", "gpt-realtime-2.1", "gpt-realtime-2.1-mini", "gpt-realtime-1.5", "gpt-transcribe",
                 "gpt-live-transcribe", "gpt-realtime-whisper"):
        assert table[name][1] is None


def test_the_model_fields_choices_come_from_the_table() -> None:
    model_field = VoiceConfig._meta.get_field("model")
    transcription_field = VoiceConfig._meta.get_field("input_transcription_model")
    assert [value for value, _ in model_field.choices] == list(catalog.names("realtime"))
    assert [value for value, _ in transcription_field.choices] == list(catalog.names("transcription"))
    assert model_field.default == "gpt-realtime-2.1"


def test_a_retiring_model_is_selectable_until_its_date_then_not() -> None:
    assert "gpt-realtime" in dict(catalog.selectable("realtime", date(2027, 1, 19)))
    assert "gpt-realtime" not in dict(catalog.selectable("realtime", REALTIME_GONE))
    assert "whisper-1" in dict(catalog.selectable("transcription", date(2027, 2, 25)))
    assert "whisper-1" not in dict(catalog.selectable("transcription", ALL_GONE))
    config = VoiceConfig(name="x", slug="x", model="gpt-realtime", input_transcription_model="whisper-1")
    with mock.patch("voice.catalog.today", return_value=date(2027, 1, 19)):
        config.full_clean()
    with mock.patch("voice.catalog.today", return_value=REALTIME_GONE), pytest.raises(Exception) as refused:
        config.full_clean()
    assert "gpt-realtime was shut down by OpenAI on 2027-01-20. Switch to gpt-realtime-2.1." in str(refused.value)


def test_the_change_form_and_the_list_warn_of_the_shutdown_date(superuser: User) -> None:
    config = _config(model="gpt-realtime-mini", input_transcription_model="gpt-4o-transcribe")
    client = Client()
    client.force_login(superuser)
    with mock.patch("voice.catalog.today", return_value=BEFORE):
        page = client.get(f"/admin/voice/voiceconfig/{config.pk}/change/").content.decode()
        listing = client.get("/admin/voice/voiceconfig/").content.decode()
    notice = "gpt-realtime-mini shuts down on 2027-01-20 (announced by OpenAI). Switch to gpt-realtime-2.1-mini."
    assert notice in page
    assert "gpt-4o-transcribe shuts down on 2027-02-26" in page
    assert "retirement-warning" in page
    assert notice in listing
    # The form offers the retiring model with its date, and never a model past its date.
    assert "gpt-realtime-mini (shuts down 2027-01-20)" in page


def test_a_current_config_shows_no_warning(superuser: User) -> None:
    config = VoiceConfig.objects.get(slug="default")
    client = Client()
    client.force_login(superuser)
    page = client.get(f"/admin/voice/voiceconfig/{config.pk}/change/").content.decode()
    assert "retirement-warning" not in page


def test_the_system_check_warns_of_each_config_on_a_retiring_model() -> None:
    _config(model="gpt-realtime")
    _config(name="Old ears", slug="old-ears", input_transcription_model="whisper-1")
    _config(name="Inactive", slug="inactive", model="gpt-realtime", is_active=False)
    warnings = retiring_models(today=BEFORE)
    assert [w.id for w in warnings] == ["voice.W001", "voice.W001"]
    assert all(w.level == checks.WARNING for w in warnings)
    assert "Legacy line" in warnings[0].msg and "2027-01-20" in warnings[0].msg
    assert "Old ears" in warnings[1].msg and "2027-02-26" in warnings[1].msg
    # Past the date the warning says sessions are refused.
    past = retiring_models(today=REALTIME_GONE)
    assert past[0].id == "voice.W002" and "refused" in past[0].hint


def test_the_system_check_is_registered_and_runs_with_the_database_checks() -> None:
    _config(model="gpt-realtime")
    found = checks.run_checks(tags=[checks.Tags.database], databases=["default"])
    assert any(m.id in ("voice.W001", "voice.W002") and "Legacy line" in m.msg for m in found)


def test_the_seeded_site_passes_the_check() -> None:
    assert retiring_models(today=BEFORE) == []


@pytest.mark.django_db(transaction=True)
async def test_a_session_on_a_model_past_its_date_is_refused_before_any_call(owner: User) -> None:
    await _aconfig(model="gpt-realtime")
    with mock.patch("voice.realtime.webrtc.httpx.AsyncClient") as http:
        with pytest.raises(SessionRefused) as refused:
            await start_session(owner, "legacy", today=REALTIME_GONE)
        http.assert_not_called()
    assert refused.value.code == "model_retired"
    assert refused.value.close_code == 4410
    assert refused.value.message == (
        "This assistant uses gpt-realtime, which OpenAI shut down on 2027-01-20, so it cannot start. "
        "Ask an administrator to switch the assistant to a current model."
    )
    assert "_" not in refused.value.message.replace("gpt-realtime", "")  # no setting names for users
    assert not await _sessions_exist()


@pytest.mark.django_db(transaction=True)
async def test_a_retired_transcription_model_refuses_too_and_the_day_before_works(owner: User) -> None:
    await _aconfig(input_transcription_model="gpt-4o-mini-transcribe")
    with pytest.raises(SessionRefused) as refused:
        await start_session(owner, "legacy", today=ALL_GONE)
    assert refused.value.code == "model_retired"
    session = await start_session(owner, "legacy", today=date(2027, 2, 25))
    assert session.session_payload["audio"]["input"]["transcription"]["model"] == "gpt-4o-mini-transcribe"


@pytest.mark.django_db(transaction=True)
async def test_the_websocket_user_reads_the_refusal_as_an_ag2_error(owner: User) -> None:
    await _aconfig(model="gpt-realtime")
    with mock.patch("voice.catalog.today", return_value=REALTIME_GONE):
        peer, _ = await open_peer(owner, "/ws/voice/?config=legacy")
        error = await peer.until("ag2.error")
    assert error["code"] == "model_retired" and "shut down on 2027-01-20" in error["message"]
    assert await peer.closed() == 4410


async def _aconfig(**fields: object) -> VoiceConfig:
    from channels.db import database_sync_to_async

    return await database_sync_to_async(_config)(**fields)


async def _sessions_exist() -> bool:
    from channels.db import database_sync_to_async

    return await database_sync_to_async(VoiceSession.objects.exists)()
