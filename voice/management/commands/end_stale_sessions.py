"""End sessions a crashed process left live. Safe to run at every start-up."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from voice.models import VoiceSession


class Command(BaseCommand):
    help = "Mark sessions still 'connecting' or 'active' as ended with reason 'server_restart'."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=int,
            default=0,
            help="Only sessions started at least this many seconds ago (for running beside live servers).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        count = VoiceSession.end_stale(older_than_seconds=options["older_than"])
        self.stdout.write(f"Ended {count} stale session(s).")
