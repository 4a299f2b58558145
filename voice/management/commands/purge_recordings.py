"""Delete call recordings past their retention period. Safe to run at any time (cron: daily)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from voice.call_audio import purge_expired


class Command(BaseCommand):
    help = ("Delete call recordings (their rows and their audio files) whose configuration's retention "
            "period has passed. Meant for cron, e.g. once a day.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Only say how many would be deleted.")

    def handle(self, *args: Any, **options: Any) -> None:
        count = purge_expired(dry_run=options["dry_run"])
        verb = "would be deleted" if options["dry_run"] else "deleted"
        self.stdout.write(f"{count} recording(s) past their retention period {verb}.")
