"""Prices: every selectable model with a published price has one, and a model without a price is
recorded as unpriced (cost null, flagged), never billed at another model's prices."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import Client

from tests.record_feed import relay
from tests.test_recording import USAGE, conversation
from voice import catalog, pricing
from voice.models import ModelPrice, ResponseUsage, VoiceConfig, VoiceSession
from voice.recording import Recorder

pytestmark = pytest.mark.django_db

COUNTS = pricing.usage_counts(USAGE)


def test_gpt_realtime_mini_is_unpriced_not_billed_as_gpt_realtime() -> None:
    # It used to match "gpt-realtime" as a prefix and cost several times its real price.
    assert pricing.price_for("gpt-realtime-mini") is None
    assert pricing.price_for("gpt-realtime-mini-2025-12-15") is None
    assert pricing.cost_of(pricing.price_for("gpt-realtime-mini"), COUNTS) is None


@pytest.mark.parametrize(
    ("model", "billed_as"),
    [
        ("gpt-realtime", "gpt-realtime"),
        ("gpt-realtime-2025-08-28", "gpt-realtime"),
        ("gpt-realtime-2.1", "gpt-realtime-2.1"),
        ("gpt-realtime-2.1-mini", "gpt-realtime-2.1-mini"),
        ("gpt-realtime-2.1-mini-2026-09-01", "gpt-realtime-2.1-mini"),
        ("gpt-realtime-1.5", "gpt-realtime-1.5"),
    ],
)
def test_a_model_or_its_dated_snapshot_is_billed_at_its_own_price(model: str, billed_as: str) -> None:
    price = pricing.price_for(model)
    assert price is not None and price.model == billed_as


@pytest.mark.parametrize("model", ["gpt-realtime-2.1-preview", "gpt-realtime-3", "gpt-realtime-2.1-mini-x", ""])
def test_a_model_that_is_not_exactly_priced_is_unpriced(model: str) -> None:
    assert pricing.price_for(model) is None


def test_every_selectable_realtime_model_with_a_published_price_has_a_row() -> None:
    priced = set(ModelPrice.objects.values_list("model", flat=True))
    # PROTOCOL.md publishes no price for gpt-realtime-mini: it stays unpriced rather than guessed.
    assert priced == set(catalog.names("realtime")) - {"gpt-realtime-mini"}
    for row in ModelPrice.objects.all():
        assert row.image_input is None and row.image_cached_input is None  # not published


def test_image_tokens_without_an_image_price_make_the_response_unpriced() -> None:
    price = ModelPrice.objects.get(model="gpt-realtime-2.1")
    with_images = {**COUNTS, "input_image_tokens": 1000}
    assert pricing.cost_of(price, with_images) is None
    price.image_input, price.image_cached_input = Decimal("5"), Decimal("0.50")
    assert pricing.cost_of(price, with_images) == pricing.cost_of(price, COUNTS) + Decimal("0.005")


def test_a_running_cost_stays_unknown_once_a_response_was_unpriced() -> None:
    assert pricing.add_cost(Decimal("1"), Decimal("2")) == Decimal("3")
    assert pricing.add_cost(Decimal("1"), None) is None
    assert pricing.add_cost(None, Decimal("2")) is None
    assert pricing.format_cost(None) is None
    assert pricing.format_cost(Decimal("0.5")) == "0.500000"


@pytest.mark.django_db(transaction=True)
async def test_a_session_on_an_unpriced_model_records_null_cost_and_publishes_it(owner: User) -> None:
    session = await _session(owner, "gpt-realtime-mini")
    recorder = Recorder(str(session.pk), model="gpt-realtime-mini")
    for frame in conversation():
        relay(recorder, frame)
    await recorder.close()
    usage, stored = await _usage_and_session(session)
    assert usage.total_tokens == 1300 and usage.cost_usd is None
    assert stored.total_tokens == 1300 and stored.cost_usd is None
    assert (await database_sync_to_async(stored.to_dict)())["cost_usd"] is None  # what dashboards get
    assert recorder.totals()["cost_usd"] is None


@pytest.mark.django_db(transaction=True)
async def test_a_priced_model_still_records_its_cost(owner: User) -> None:
    session = await _session(owner, "gpt-realtime-2.1-mini")
    recorder = Recorder(str(session.pk), model="gpt-realtime-2.1-mini")
    for frame in conversation():
        relay(recorder, frame)
    await recorder.close()
    usage, stored = await _usage_and_session(session)
    # 2.1-mini: text 0.60 / cached 0.06 / out 2.40, audio in 10 / out 20 (USD per million tokens)
    expected = (200 * Decimal("0.60") + 200 * Decimal("0.06") + 600 * Decimal("10") + 100 * Decimal("2.40")
                + 200 * Decimal("20")) / Decimal(1_000_000)
    assert usage.cost_usd == expected.quantize(Decimal("0.000001")) == stored.cost_usd


def test_the_admin_flags_unpriced_sessions_and_usages(superuser: User) -> None:
    config = VoiceConfig.objects.get(slug="default")
    session = VoiceSession.objects.create(user=superuser, config=config, model="gpt-realtime-mini", cost_usd=None)
    ResponseUsage.objects.create(session=session, response_id="resp_1", model="gpt-realtime-mini", cost_usd=None)
    priced = VoiceSession.objects.create(user=superuser, config=config, model="gpt-realtime-2.1",
                                         cost_usd=Decimal("0.25"))
    client = Client()
    client.force_login(superuser)
    listing = client.get("/admin/voice/voicesession/").content.decode()
    assert listing.count('<span class="unpriced"') == 1
    assert "0.250000" in listing
    detail = client.get(f"/admin/voice/voicesession/{session.pk}/change/").content.decode()
    assert detail.count('<span class="unpriced"') == 2  # the session's cost and its usage row
    assert '<span class="unpriced"' not in client.get(f"/admin/voice/voicesession/{priced.pk}/change/").content.decode()
    prices = client.get("/admin/voice/modelprice/").content.decode()
    assert "No price for gpt-realtime-mini" in prices


def test_the_users_pages_say_unpriced_rather_than_zero(owner: User) -> None:
    config = VoiceConfig.objects.get(slug="default")
    session = VoiceSession.objects.create(user=owner, config=config, model="gpt-realtime-mini", cost_usd=None)
    client = Client()
    client.force_login(owner)
    assert "unpriced" in client.get(session.get_absolute_url()).content.decode()


@database_sync_to_async
def _session(user: User, model: str) -> VoiceSession:
    return VoiceSession.objects.create(user=user, config=VoiceConfig.objects.get(slug="default"), model=model)


@database_sync_to_async
def _usage_and_session(session: VoiceSession) -> tuple[Any, VoiceSession]:
    session.refresh_from_db()
    return ResponseUsage.objects.get(session=session), session
