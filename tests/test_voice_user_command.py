"""`manage.py voice_user`: accounts by role, as the README tells a newcomer to make them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-pass-2026"


def _make(name: str, role: str) -> User:
    call_command("voice_user", name, "--role", role, "--password", PASSWORD)
    return User.objects.get(username=name)


def test_each_role_gets_exactly_its_permissions() -> None:
    user, staff, operator, admin = (_make(n, n) for n in ("user", "staff", "operator", "admin"))
    assert (user.is_staff, user.is_superuser) == (False, False)
    assert (staff.is_staff, staff.is_superuser) == (True, False)
    assert operator.is_staff and operator.has_perm("voice.change_voiceconfig")
    assert not operator.has_perm("voice.delete_voicesession")
    assert not staff.has_perm("voice.change_voiceconfig")
    assert admin.is_superuser


def test_an_operator_can_edit_configs_in_the_admin_and_a_user_cannot_open_it() -> None:
    _make("olga", "operator")
    _make("uma", "user")
    operator, user = Client(), Client()
    assert operator.login(username="olga", password=PASSWORD)
    assert user.login(username="uma", password=PASSWORD)
    assert operator.get("/admin/voice/voiceconfig/add/").status_code == 200
    assert user.get("/admin/voice/voiceconfig/add/").status_code == 302  # to the admin's login


def test_changing_a_role_takes_the_old_one_away() -> None:
    _make("pat", "operator")
    call_command("voice_user", "pat", "--role", "user")
    pat = User.objects.get(username="pat")
    assert not pat.is_staff and not pat.groups.exists()
    assert pat.check_password(PASSWORD)  # untouched without --password


def test_a_weak_password_is_refused_with_the_reason() -> None:
    with pytest.raises(CommandError, match="too short"):
        call_command("voice_user", "weak", "--password", "abc")
    assert not User.objects.filter(username="weak").exists()
