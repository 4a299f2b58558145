"""End live sessions that no process serves any more. Safe to run at any time, beside live servers."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from voice.models import VoiceSession


class Command(BaseCommand):
    help = (
        "Mark sessions still 'connecting' or 'active' whose serving process stopped renewing their heartbeat "
        "(for longer than VOICE_HEARTBEAT_GRACE_SECONDS) as ended with reason 'server_lost'. Serving processes "
        "do this themselves; the command is for when none is running."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--grace",
            "--older-than",  # the name this option had before heartbeats; same meaning for every caller
            dest="grace",
            type=float,
            default=None,
            help="Seconds without a heartbeat after which a session counts as unserved "
            "(default: VOICE_HEARTBEAT_GRACE_SECONDS). 0 ends every live session: only when no process serves.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        grace = options["grace"] if options["grace"] is not None else settings.VOICE_HEARTBEAT_GRACE_SECONDS
        count = VoiceSession.end_unserved(grace)
        self.stdout.write(f"Ended {count} stale session(s).")
