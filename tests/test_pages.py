"""Login, logout and the home page's routing of people to where they belong."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_login_page_renders_with_the_site_chrome() -> None:
    response = Client().get("/accounts/login/")
    assert response.status_code == 200
    assert b"Realtime Voice" in response.content
    assert b'name="username"' in response.content


def test_logging_in_sends_a_user_home_and_then_to_the_voice_page(owner: User) -> None:
    client = Client()
    response = client.post("/accounts/login/", {"username": "alice", "password": "alice-pass-2026"})
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/")["Location"] == "/voice/"


def test_a_wrong_password_is_explained() -> None:
    response = Client().post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"didn't match" in response.content


def test_staff_are_sent_to_the_dashboard(staff: User) -> None:
    client = Client()
    client.force_login(staff)
    assert client.get("/")["Location"] == "/voice/dashboard/"


def test_anonymous_visitors_are_sent_to_log_in() -> None:
    assert Client().get("/")["Location"] == "/accounts/login/"
    assert Client().get("/voice/")["Location"].startswith("/accounts/login/")


def test_logout_ends_the_session(owner: User) -> None:
    client = Client()
    client.force_login(owner)
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/")["Location"] == "/accounts/login/"


def test_a_plain_user_cannot_open_the_dashboard(owner: User) -> None:
    client = Client()
    client.force_login(owner)
    assert client.get("/voice/dashboard/").status_code == 403


def test_the_health_check_answers() -> None:
    assert Client().get("/healthz").json() == {"ok": True}
