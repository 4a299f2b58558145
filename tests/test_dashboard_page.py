"""The staff dashboard page: what it serves to staff, and whom it refuses."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db

DASHBOARD = "/voice/dashboard/"
DOM_IDS = (
    "dash-state",
    "dash-error",
    "sessions",
    "sessions-body",
    "no-sessions",
    "recent",
    "session-view",
    "session-transcript",
    "session-tools",
    "session-events",
    "events-filter",
)


def _client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_staff_get_the_dashboard_with_its_script_and_styles(staff: User) -> None:
    response = _client_for(staff).get(DASHBOARD)
    assert response.status_code == 200
    html = response.content.decode()
    assert '<script type="module" src="/static/voice/dashboard.js"></script>' in html
    assert 'href="/static/voice/dashboard.css"' in html
    assert "Live sessions" in html


def test_the_dashboard_has_every_element_its_script_and_the_browser_tests_rely_on(staff: User) -> None:
    html = _client_for(staff).get(DASHBOARD).content.decode()
    for dom_id in DOM_IDS:
        assert html.count(f'id="{dom_id}"') == 1, dom_id
    assert '<tbody id="sessions-body">' in html
    assert 'id="dash-error" class="dash-error" role="alert"' in html


def test_the_session_view_starts_hidden_and_watching_nothing(staff: User) -> None:
    html = _client_for(staff).get(DASHBOARD).content.decode()
    assert '<section id="session-view" class="card session-view" data-session-id="" hidden' in html


def test_a_plain_user_gets_a_403_page_in_the_sites_own_look(owner: User) -> None:
    response = _client_for(owner).get(DASHBOARD)
    assert response.status_code == 403
    html = response.content.decode()
    assert 'class="brand"' in html and "voice/voice.css" in html  # base.html: the site's header and styles
    assert "staff" in html and "dashboard.js" not in html
    assert "admin/login" not in html and "Django administration" not in html
    assert 'href="/voice/"' in html  # somewhere useful to go instead


def test_an_anonymous_visitor_is_sent_to_the_sites_login_and_sees_nothing_of_the_page() -> None:
    response = Client().get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert "next=/voice/dashboard/" in response["Location"]
    assert b"dashboard.js" not in response.content


def test_the_dashboard_script_builds_no_html_from_strings() -> None:
    # Transcripts and payloads are user- and model-controlled: the script must use textContent.
    from django.contrib.staticfiles import finders

    path = finders.find("voice/dashboard.js")
    assert path, "voice/dashboard.js is not found by the static files finders"
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    for risky in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment"):
        assert risky not in source, risky
