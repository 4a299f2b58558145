"""What both consumers share: dispatch without the per-message thread hop, the flood notice's pace, and
reading the socket URL's query."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name

# A flooding browser is told at most this often that its frames over the rate are ignored.
FLOOD_NOTICE_SECONDS = 5.0


class NoPerMessageThreadHop:
    """Dispatch without channels' per-message `aclose_old_connections()`.

    channels hops to the one sync thread before *every* message to close stale database connections.
    For a voice session that is a thread round trip per relayed OpenAI event, and it queues behind the
    Recorder's batch writes on that same thread: it cut ingest to about a third (benchmarks/README.md).
    These consumers touch the ORM only through `database_sync_to_async`, which runs the same check
    around each call itself, so skipping the per-message hop loses nothing.
    """

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)



def query_param(scope: dict[str, Any], name: str) -> str | None:
    """The first value of `name` in the socket URL's query string, or None."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None
