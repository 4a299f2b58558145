"""Call recordings: the browser records both sides of a call (it holds the media in both call modes)
and uploads a chunk at a time; this module checks and stores each chunk, serves the whole recording
back (with byte ranges, so that a player can seek) and deletes recordings past their retention.

Each chunk is its own file in the "recordings" storage (settings.STORAGES): any Django storage backend
works, none needs to append. The chunks of one MediaRecorder, put end to end, are one valid WebM stream.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import IntegrityError, transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from voice.models import CallRecording, RecordingChunk, VoiceConfig, VoiceSession

logger = logging.getLogger(__name__)

# Every WebM (Matroska) file starts with the EBML header's id; a recording's first chunk must too.
EBML_MAGIC = b"\x1a\x45\xdf\xa3"
AUDIO_TYPES = ("audio/webm",)
# Where the recording may start on the session's clock (ms after the call connected): bounded.
MIN_OFFSET_MS, MAX_OFFSET_MS = -60_000, 3_600_000
DEFAULT_RETENTION_DAYS = 30
READ_BLOCK = 64 * 1024


def storage() -> Storage:
    return storages["recordings"]


class Refusal(Exception):
    """An upload refused: `message` is a sentence for the user, `status` the HTTP status."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


@dataclass(frozen=True)
class Stored:
    index: int
    stored: bool  # False: the same chunk was stored before (a retry after a lost answer)
    next_index: int
    size_bytes: int


def recording_policy(session: VoiceSession) -> str:
    config = session.config
    return config.recording if config is not None else VoiceConfig.Recording.OFF


def consent_for(config: VoiceConfig, answer: str | None) -> bool:
    """What the user answered (`yes`/`no`, absent) to the recording notice, as the session keeps it.

    Raises ValueError when the config requires consent and the user did not give it: no call then."""
    if config.recording == VoiceConfig.Recording.OFF:
        return False
    agreed = (answer or "").strip().lower() == "yes"
    if config.recording == VoiceConfig.Recording.REQUIRED and not agreed:
        raise ValueError("recording consent required")
    return agreed


def upload_window_open(session: VoiceSession, now: Any = None) -> bool:
    """Uploads are taken while the call runs and for a short grace after it ends (its last chunks)."""
    if session.ended_at is None:
        return session.status in (VoiceSession.Status.CONNECTING, VoiceSession.Status.ACTIVE)
    now = now or timezone.now()
    return now - session.ended_at <= timedelta(seconds=settings.VOICE_RECORDING_UPLOAD_GRACE_SECONDS)


def _bounded_int(raw: str | None, low: int, high: int, what: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"-?\d{1,10}", raw.strip()):
        raise Refusal(400, "invalid_header", f"The recording's {what} was not a whole number.")
    value = int(raw)
    if not low <= value <= high:
        raise Refusal(400, "invalid_header", f"The recording's {what} was out of range.")
    return value


def check_chunk(session: VoiceSession, index: int, content_type: str, body: bytes) -> None:
    """The checks that need no lock: who, when, what (the caller found the session among the user's own)."""
    if not session.recording_consent:
        raise Refusal(403, "not_recorded", "This call is not being recorded, so no audio was stored.")
    if not upload_window_open(session):
        raise Refusal(410, "session_ended", "This call has ended and its recording is closed; nothing more "
                      "can be added to it.")
    if not body:
        raise Refusal(400, "empty_chunk", "The recording chunk was empty.")
    if content_type.split(";")[0].strip().lower() not in AUDIO_TYPES:
        raise Refusal(415, "not_audio", "Only WebM audio from the call recorder can be stored.")
    if len(body) > settings.VOICE_RECORDING_MAX_CHUNK_BYTES:
        raise Refusal(413, "chunk_too_large", "The recording chunk was too large.")
    if index == 0 and not body.startswith(EBML_MAGIC):
        raise Refusal(415, "not_audio", "The recording does not start as WebM audio, so it was not stored.")


def store_chunk(session: VoiceSession, index: int, body: bytes, *, offset_ms: str | None = None,
                duration_ms: str | None = None) -> Stored:
    """Store chunk `index` of the session's recording: in order, once, within the limits.

    A chunk already stored with the same bytes is accepted again without change (the browser retries
    a chunk whose answer it lost); with other bytes, or out of order, it is refused and nothing changes.
    """
    offset = _bounded_int(offset_ms, MIN_OFFSET_MS, MAX_OFFSET_MS, "start")
    duration = _bounded_int(duration_ms, 0, (session.max_duration_seconds + 600) * 1000, "length")
    digest = hashlib.sha256(body).hexdigest()
    with transaction.atomic():
        recording = _locked_recording(session, index, offset)
        if index < recording.chunk_count:
            stored = recording.chunks.filter(index=index).values_list("sha256", flat=True).first()
            if stored != digest:
                raise Refusal(409, "chunk_conflict", f"Part {index + 1} of the recording was already stored with "
                              "different audio; the stored recording was kept.", next=recording.chunk_count)
            return Stored(index, False, recording.chunk_count, recording.size_bytes)
        if index > recording.chunk_count:
            raise Refusal(409, "out_of_order", f"Part {index + 1} of the recording came before part "
                          f"{recording.chunk_count + 1}; send the parts in order.", next=recording.chunk_count)
        if recording.size_bytes + len(body) > settings.VOICE_RECORDING_MAX_BYTES:
            raise Refusal(413, "recording_too_large", "The recording has reached its size limit; the rest of "
                          "the call is not recorded.", next=recording.chunk_count)
        minute_ago = timezone.now() - timedelta(minutes=1)
        recent = recording.chunks.filter(created_at__gte=minute_ago).count()
        if recent >= settings.VOICE_RECORDING_MAX_CHUNKS_PER_MINUTE:
            raise Refusal(429, "rate_limited", "The recording is being sent too fast; wait a moment.",
                          next=recording.chunk_count)
        name = storage().save(f"{session.pk}/{index:06d}-{digest[:12]}.webm", ContentFile(body))
        try:
            RecordingChunk.objects.create(recording=recording, index=index, size=len(body), sha256=digest, name=name)
        except IntegrityError:
            storage().delete(name)
            raise
        recording.chunk_count = index + 1
        recording.size_bytes += len(body)
        if duration is not None:
            recording.duration_ms = max(recording.duration_ms, duration)
        recording.save(update_fields=["chunk_count", "size_bytes", "duration_ms", "updated_at"])
    return Stored(index, True, recording.chunk_count, recording.size_bytes)


def _locked_recording(session: VoiceSession, index: int, offset: int | None) -> CallRecording:
    """The session's recording row, locked for this chunk; the first chunk creates it."""
    recording = CallRecording.objects.select_for_update().filter(session=session).first()
    if recording is not None:
        return recording
    if index != 0:
        raise Refusal(409, "out_of_order", f"Part {index + 1} of the recording came before part 1; send the "
                      "parts in order.", next=0)
    days = session.config.recording_retention_days if session.config is not None else DEFAULT_RETENTION_DAYS
    now = timezone.now()
    recording, _ = CallRecording.objects.get_or_create(session=session, defaults={
        "offset_ms": offset or 0, "started_at": now, "delete_after": now + timedelta(days=days)})
    return CallRecording.objects.select_for_update().get(pk=recording.pk)


# --- reading ----------------------------------------------------------------------------------------


def chunk_rows(recording: CallRecording) -> list[tuple[str, int]]:
    return list(recording.chunks.order_by("index").values_list("name", "size"))


def read_range(rows: list[tuple[str, int]], start: int, end: int) -> Iterator[bytes]:
    """Bytes start..end (inclusive) of the chunks put end to end, read a block at a time."""
    position = 0
    store = storage()
    for name, size in rows:
        chunk_start, chunk_end = position, position + size - 1
        position += size
        if chunk_end < start or chunk_start > end:
            continue
        with store.open(name, "rb") as handle:
            skip = max(0, start - chunk_start)
            handle.seek(skip)
            left = min(chunk_end, end) - (chunk_start + skip) + 1
            while left > 0:
                block = handle.read(min(READ_BLOCK, left))
                if not block:
                    logger.error("Recording chunk %s is shorter than recorded", name)
                    return
                left -= len(block)
                yield block


def parse_range(header: str, total: int) -> tuple[int, int] | None:
    """One `bytes=a-b` range (what media players ask for), or None for the whole file."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not match or total == 0 or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":
        start, end = max(0, total - int(last)), total - 1
    else:
        start, end = int(first), min(int(last), total - 1) if last else total - 1
    if start > end or start >= total:
        raise ValueError("unsatisfiable range")
    return start, end


# --- deleting ---------------------------------------------------------------------------------------


@receiver(post_delete, sender=RecordingChunk)
def _delete_chunk_file(sender: Any, instance: RecordingChunk, **kwargs: Any) -> None:
    """A chunk's row gone (its recording or session deleted): its file goes too, once that is committed."""
    name = instance.name

    def delete() -> None:
        try:
            storage().delete(name)
        except Exception:  # a file already gone, or a storage outage: the row is gone either way
            logger.warning("Could not delete the recording file %s", name, exc_info=True)

    transaction.on_commit(delete)


def purge_expired(now: Any = None, *, dry_run: bool = False) -> int:
    """Delete every recording past its retention period (and its files); returns how many."""
    expired = CallRecording.objects.filter(delete_after__lte=now or timezone.now())
    if dry_run:
        return expired.count()
    count = 0
    for pk in expired.values_list("pk", flat=True).iterator():
        with transaction.atomic():
            count += CallRecording.objects.filter(pk=pk).delete()[1].get("voice.CallRecording", 0)
    return count
