"""``python manage.py voice_user NAME --role operator``: create a user (or change one's role).

The roles are what the README describes: a *user* talks and reads their own sessions; *staff* also
watch every live session on the dashboard and read every record in the admin; an *operator* is staff who
may also create and edit voice configurations (the "Voice operators" group); an *admin* may do
everything. Without ``--password`` a new user is asked for one (or gets none when there is no terminal:
they then cannot log in until an admin sets one).
"""

from __future__ import annotations

import getpass
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

OPERATORS_GROUP = "Voice operators"
ROLES = ("user", "staff", "operator", "admin")


class Command(BaseCommand):
    help = "Create a user with a role (user, staff, operator, admin), or change an existing user's role."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", choices=ROLES, default="user")
        parser.add_argument("--email", default="")
        parser.add_argument("--password", help="the new password (asked for when omitted on a terminal)")

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"].strip()
        role: str = options["role"]
        if not username:
            raise CommandError("Give a user name.")
        User = get_user_model()
        password = options["password"]
        with transaction.atomic():
            user, created = User.objects.get_or_create(username=username)
            if options["email"]:
                user.email = options["email"]
            if password is None and created and sys.stdin.isatty():
                password = self._ask_password(user)
            if password is not None:
                try:
                    validate_password(password, user)
                except ValidationError as exc:
                    raise CommandError(" ".join(exc.messages)) from exc
                user.set_password(password)
            elif created:
                user.set_unusable_password()
            user.is_staff = role in ("staff", "operator", "admin")
            user.is_superuser = role == "admin"
            user.save()
            operators = Group.objects.filter(name=OPERATORS_GROUP).first()
            if operators is None and role == "operator":
                raise CommandError(f"The {OPERATORS_GROUP!r} group is missing; run `python manage.py migrate` first.")
            if operators is not None:
                if role == "operator":
                    user.groups.add(operators)
                else:
                    user.groups.remove(operators)
        verb = "Created" if created else "Updated"
        self.stdout.write(f"{verb} {username!r} as {role}.")
        if created and password is None:
            self.stdout.write("It has no password yet: set one with `python manage.py changepassword "
                              f"{username}` before logging in.")

    def _ask_password(self, user: Any) -> str:
        for _ in range(3):
            first = getpass.getpass("Password: ")
            if first != getpass.getpass("Password (again): "):
                self.stderr.write("The passwords differ; try again.")
                continue
            return first
        raise CommandError("No password set.")
