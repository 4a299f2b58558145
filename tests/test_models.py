"""Behaviour that lives on the models: transcript order, stale sessions, prices."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from voice.models import ModelPrice, TranscriptItem, VoiceConfig, VoiceSession

pytestmark = pytest.mark.django_db


def _session(user: User, **extra: object) -> VoiceSession:
    return VoiceSession.objects.create(user=user, config=VoiceConfig.objects.get(slug="default"), **extra)


def test_the_transcript_follows_the_item_chain_not_arrival_order(owner: User) -> None:
    session = _session(owner)
    # The assistant's reply is recorded before the user's late-arriving input transcription.
    TranscriptItem.objects.create(session=session, item_id="item_b", previous_item_id="item_a", role="assistant",
                                  text="It is noon.")
    TranscriptItem.objects.create(session=session, item_id="item_c", previous_item_id="item_b", role="user",
                                  text="Thanks.")
    TranscriptItem.objects.create(session=session, item_id="item_a", previous_item_id="", role="user",
                                  text="What time is it?")
    assert [i.item_id for i in session.ordered_transcript()] == ["item_a", "item_b", "item_c"]
    assert session.transcript_text().splitlines() == ["user: What time is it?", "assistant: It is noon.",
                                                      "user: Thanks."]


def test_a_truncated_reply_is_marked_as_interrupted_in_the_text(owner: User) -> None:
    session = _session(owner)
    TranscriptItem.objects.create(session=session, item_id="i1", role="assistant", text="Once upon",
                                  status=TranscriptItem.Status.TRUNCATED)
    assert session.transcript_text() == "assistant: Once upon [interrupted]"


def test_an_item_id_is_unique_within_a_session(owner: User) -> None:
    session = _session(owner)
    TranscriptItem.objects.create(session=session, item_id="dup", role="user")
    with pytest.raises(IntegrityError), transaction.atomic():
        TranscriptItem.objects.create(session=session, item_id="dup", role="user")


def test_the_database_refuses_two_default_configs() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        VoiceConfig.objects.create(name="Other", slug="other", is_default=True)


def test_end_unserved_ends_only_live_sessions_whose_heartbeat_is_older_than_the_grace(owner: User) -> None:
    last_heard = timezone.now() - timedelta(seconds=60)
    lost = _session(owner, status=VoiceSession.Status.ACTIVE, heartbeat_at=last_heard)
    lost_connecting = _session(owner, heartbeat_at=last_heard)
    served = _session(owner, status=VoiceSession.Status.ACTIVE)
    done = _session(owner, status=VoiceSession.Status.ENDED, end_reason="hangup", heartbeat_at=last_heard)
    assert VoiceSession.end_unserved(30) == 2
    for session in (lost, lost_connecting):
        session.refresh_from_db()
        assert session.status == VoiceSession.Status.ENDED
        assert session.end_reason == "server_lost"
        assert session.ended_at == last_heard  # when it was last known to be served
    served.refresh_from_db()
    done.refresh_from_db()
    assert served.status == VoiceSession.Status.ACTIVE
    assert done.end_reason == "hangup"


def test_end_unserved_can_be_limited_to_one_user(owner: User, colleague: User) -> None:
    last_heard = timezone.now() - timedelta(seconds=60)
    mine = _session(owner, heartbeat_at=last_heard)
    theirs = _session(colleague, heartbeat_at=last_heard)
    assert VoiceSession.end_unserved(30, user=owner) == 1
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.status, theirs.status) == ("ended", "connecting")


def test_renewing_heartbeats_revives_a_session_ended_as_lost_that_is_still_served(owner: User) -> None:
    last_heard = timezone.now() - timedelta(seconds=60)
    session = _session(owner, status=VoiceSession.Status.ACTIVE, heartbeat_at=last_heard)
    other = _session(owner, status=VoiceSession.Status.ENDED, end_reason="hangup", heartbeat_at=last_heard)
    VoiceSession.end_unserved(30)
    assert VoiceSession.renew_heartbeats([str(session.pk), str(other.pk)]) == 1
    session.refresh_from_db()
    other.refresh_from_db()
    assert session.status == VoiceSession.Status.ACTIVE and session.ended_at is None and not session.end_reason
    assert session.heartbeat_at > last_heard
    assert other.status == VoiceSession.Status.ENDED and other.heartbeat_at == last_heard


def test_cost_bills_cached_tokens_at_the_cached_rate() -> None:
    price = ModelPrice.objects.get(model="gpt-realtime")
    # 1M uncached audio in at $32, 1M cached audio at $0.40, 1M audio out at $64, 1M text out at $16.
    cost = price.cost(input_text=0, input_audio=2_000_000, cached_text=0, cached_audio=1_000_000,
                      output_text=1_000_000, output_audio=1_000_000)
    assert cost == Decimal("32") + Decimal("0.40") + Decimal("64") + Decimal("16")


def test_cost_of_a_small_response_keeps_micro_dollars() -> None:
    price = ModelPrice.objects.get(model="gpt-realtime-2.1-mini")
    cost = price.cost(input_text=120, input_audio=30, cached_text=100, cached_audio=0, output_text=20,
                      output_audio=50)
    expected = (20 * Decimal("0.60") + 100 * Decimal("0.06") + 20 * Decimal("2.40") + 30 * Decimal("10")
                + 50 * Decimal("20")) / Decimal(1_000_000)
    assert cost == expected.quantize(Decimal("0.000001"))


def test_a_session_summary_has_the_dashboard_fields(owner: User) -> None:
    session = _session(owner, config_name="Default assistant", model="gpt-realtime")
    summary = session.to_dict()
    assert summary["user"] == "alice"
    assert summary["status"] == "connecting"
    assert summary["cost_usd"] == "0.000000"
    assert set(summary) >= {"id", "config", "started_at", "turns", "total_tokens"}
