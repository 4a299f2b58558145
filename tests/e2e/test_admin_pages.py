"""The admin's session pages in real Chromium at a laptop's and a phone's width: nothing overflows the
page, and the session list shows its tokens and cost without scrolling sideways."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from tests.e2e.harness import Harness
from tests.e2e.pages import log_in
from voice.models import SessionEvent, VoiceConfig, VoiceSession

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(90),
]

WIDTHS = (1280, 390)
# How far the page scrolls sideways, and how far the cost column's right edge lies past the list's
# visible right edge (positive: hidden until one scrolls the table).
MEASURE = """() => {
  const page = document.documentElement.scrollWidth - document.documentElement.clientWidth;
  const box = document.querySelector('#changelist .results');
  const cost = document.querySelector('#result_list td.field-cost');
  const hidden = box && cost ? cost.getBoundingClientRect().right - box.getBoundingClientRect().right : null;
  return {page, hidden};
}"""


def test_session_pages_fit_a_laptop_and_a_phone(e2e: Harness, superuser: User, owner: User) -> None:
    config = VoiceConfig.objects.get(slug="default")
    session = None
    for n in range(12):
        session = VoiceSession.objects.create(
            user=owner, config=config, config_name=config.name, model=config.model, status="ended",
            end_reason="server_lost", call_id=f"rtc_{n:024d}", total_tokens=123_456 + n,
            cost_usd=None if n == 2 else Decimal("12.345678"))
        SessionEvent.objects.bulk_create(SessionEvent(
            session=session, seq=i, direction="internal", type="response.output_audio_transcript.done",
            payload={"type": "response.output_audio_transcript.done", "transcript": "a long line of words " * 40})
            for i in range(3))
    assert session is not None
    event = SessionEvent.objects.filter(session=session).first()
    assert event is not None
    page = e2e.new_page("admin")
    log_in(page, "root", "root-pass-2026", next_path="/admin/")
    urls = {
        "sessions": "/admin/voice/voicesession/",
        "session": f"/admin/voice/voicesession/{session.pk}/change/",
        "events": f"/admin/voice/sessionevent/?q={session.pk}",
        "event": f"/admin/voice/sessionevent/{event.pk}/change/",
    }
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for name, url in urls.items():
            page.goto(url)
            if name == "session":
                page.click("#events-group summary")
                page.locator("#events-group details.payload summary").first.click()
            measured = page.evaluate(MEASURE)
            e2e.screenshot(page, f"admin-{name}-{width}")
            assert measured["page"] <= 0, (name, width, measured)
            if name == "sessions":
                assert measured["hidden"] is not None and measured["hidden"] <= 0, (width, measured)
                assert page.locator("#result_list td.field-cost").first.inner_text() == "$12.3457"
                assert page.locator("#result_list td.field-tokens").first.inner_text() == "123,467"
