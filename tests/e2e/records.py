"""Reading back what the server recorded, with bounded waits (the Recorder writes in batches)."""

from __future__ import annotations

from typing import Any

from tests.e2e.servers import wait_until


def wait_for_session(session_id: str, *, timeout: float = 15.0, **expected: Any) -> Any:
    """The VoiceSession row once the given fields hold the expected values (e.g. status="ended")."""
    from voice.models import VoiceSession

    def check() -> Any:
        session = VoiceSession.objects.filter(pk=session_id).first()
        assert session is not None, f"no session {session_id}"
        seen = {key: getattr(session, key) for key in expected}
        assert seen == expected, f"session {session_id}: {seen}"
        return session

    return wait_until(check, timeout=timeout, what=f"session {session_id} to have {expected}")


def event_types(session_id: str, direction: str | None = None, origin: str | None = None) -> list[str]:
    from voice.models import SessionEvent

    events = SessionEvent.objects.filter(session_id=session_id)
    if direction:
        events = events.filter(direction=direction)
    if origin:
        events = events.filter(origin=origin)
    return list(events.order_by("seq").values_list("type", flat=True))
