"""``python manage.py replay_spool``: write the rows a process spooled while the database was down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from voice import spool


class Command(BaseCommand):
    help = (
        "Write the session rows spooled to VOICE_SPOOL_DIR by a process that could not reach the database, "
        "then remove each file. Idempotent: safe to run twice, and beside serving processes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dir", type=Path, default=None, help="spool directory (default: VOICE_SPOOL_DIR)")
        parser.add_argument("--retry-failed", action="store_true",
                            help="first put back the files set aside in failed/ (after fixing what refused them)")

    def handle(self, *args: Any, **options: Any) -> None:
        folder = options["dir"] or spool.directory()
        if options["retry_failed"]:
            moved = spool.retry_failed(folder)
            self.stdout.write(f"{moved} file(s) taken back from {folder / spool.FAILED}.")
        report = spool.replay(folder)
        self.stdout.write(
            f"Replayed {report.files_replayed} file(s), {report.rows_written} row(s) written; "
            f"{report.files_left} file(s) left, {report.files_set_aside} set aside in {folder / spool.FAILED}."
        )
        if report.database_unreachable:
            raise CommandError("The database is unreachable; the spooled files are kept. Run this again once it is up.")
