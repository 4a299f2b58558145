"""``python manage.py realtime_emulator --port 8765``: the offline OpenAI Realtime stand-in.

The app talks to it when ``OPENAI_API_KEY`` is unset (settings.EMULATOR_URL). The emulator itself
does not use Django; this command only gives it the project's usual entry point.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Run the offline emulator of the OpenAI Realtime API (GA) on loopback."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--script", default="default", help="bundled script name or path to a .json script")
        parser.add_argument(
            "--api-key",
            default=os.environ.get("REALTIME_EMULATOR_API_KEY"),
            help="the only standard key accepted (default: any key starting with sk-)",
        )
        parser.add_argument("--max-call-seconds", type=float, default=3600.0)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            # aiohttp and aiortc live in the "emulator" extra; import late so a missing extra is a clear error.
            from realtime_emulator.app import run
            from realtime_emulator.script import load_script
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise CommandError(f"the emulator needs the 'emulator' extra (pip install -e .[emulator]): {exc}") from exc
        try:
            load_script(options["script"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["verbosity"] >= 2:
            logging.getLogger("realtime_emulator").setLevel(logging.DEBUG)
        run(
            options["host"],
            options["port"],
            api_key=options["api_key"],
            script=options["script"],
            max_call_seconds=options["max_call_seconds"],
        )
