"""Create the demo user and an admin so a fresh checkout can be tried at once."""

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create (or reset) a demo user and an admin (DEMO_USER/DEMO_PASSWORD, ADMIN_USER/ADMIN_PASSWORD)."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        accounts = [
            (os.environ.get("DEMO_USER", "demo"), os.environ.get("DEMO_PASSWORD", "demo-voice-2026"), False),
            (os.environ.get("ADMIN_USER", "admin"), os.environ.get("ADMIN_PASSWORD", "admin-voice-2026"), True),
        ]
        for username, password, is_admin in accounts:
            user, created = User.objects.get_or_create(username=username)
            user.set_password(password)
            user.is_staff = is_admin
            user.is_superuser = is_admin
            user.save()
            role = "admin" if is_admin else "user"
            verb = "created" if created else "reset"
            self.stdout.write(f"{role:5} {username!r} / {password!r} ({verb})")
