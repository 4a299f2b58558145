"""Who holds a server-mode call: one process at a time (docs/architecture.md, "Who owns a call").

The lease is two columns of `VoiceSession`: `served_by`, the token of the process that holds the call's
sideband, and `heartbeat_at`, which that process's recorder writer renews every few seconds (one UPDATE
for all its sessions, voice.recording). A process takes a session with one conditional UPDATE; it
succeeds when the lease is free (released), already ours, or its holder's heartbeat is older than the
grace (the holder died). A process that finds the lease held by a live process asks for a hand-off
(`handoff_to`); the holder honours it at its next heartbeat by closing its sideband without hanging up
and releasing the lease, and the asker's next attempt succeeds.

Every function here is synchronous ORM work: call it through `database_sync_to_async`.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from voice.models import VoiceConfig, VoiceSession

# Names this process for as long as it runs: host, pid and a random part (a pid is reused after restarts).
PROCESS_TOKEN = f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:64]
SERVER = VoiceConfig.CallMode.SERVER


def _live_server_session(session_id: str) -> Q:
    return Q(pk=session_id, mode=SERVER, status__in=[VoiceSession.Status.CONNECTING, VoiceSession.Status.ACTIVE])


def acquire(session_id: str, grace_seconds: float, *, holder: str = PROCESS_TOKEN) -> bool:
    """Take the session's lease if it is free, ours, or its holder stopped renewing it. One UPDATE."""
    now = timezone.now()
    taken = VoiceSession.objects.filter(_live_server_session(session_id)).filter(
        Q(served_by="") | Q(served_by=holder) | Q(heartbeat_at__lt=now - timedelta(seconds=grace_seconds))
    ).update(served_by=holder, handoff_to="", heartbeat_at=now)
    return taken == 1


def request_handoff(session_id: str, *, holder: str = PROCESS_TOKEN) -> bool:
    """Ask the process holding the session to let go of it (at its next heartbeat)."""
    asked = VoiceSession.objects.filter(_live_server_session(session_id)).exclude(served_by=holder).update(
        handoff_to=holder)
    return asked == 1


def release(session_id: str, *, holder: str = PROCESS_TOKEN) -> bool:
    """Let go of a session this process holds, without ending it: another process may take it at once."""
    released = VoiceSession.objects.filter(pk=session_id, served_by=holder).update(served_by="")
    return released == 1


def orphans(grace_seconds: float, *, limit: int = 20) -> list[str]:
    """Live server-mode calls nobody serves: released by a stopping process, or whose holder died.

    Only calls whose id is known: without one there is nothing at OpenAI to go back to (the sweep of
    `VoiceSession.end_unserved` ends those). A call released for a hand-off is left to the process that
    asked for it, until the grace passes."""
    stale = timezone.now() - timedelta(seconds=grace_seconds)
    rows = (VoiceSession.objects.live().filter(mode=SERVER).exclude(call_id="")
            .filter(Q(served_by="", handoff_to="") | Q(heartbeat_at__lt=stale)).order_by("heartbeat_at"))
    return [str(pk) for pk in rows.values_list("pk", flat=True)[:limit]]


def holder_of(session_id: str) -> str | None:
    return VoiceSession.objects.filter(pk=session_id).values_list("served_by", flat=True).first()
