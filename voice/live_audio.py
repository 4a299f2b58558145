"""A GPT-Live call's recording, assembled on the server from the sideband's audio copies (docs/gpt-live.md,
"Recording").

GPT-Live's sideband reflects both sides of the call as PCM16 mono 24 kHz: the output with ``start_ms``/
``end_ms`` on the session's timeline, the input with no time at all (``session.input_audio.append
{audio}``). The timeline advances with the input audio (the reference, 3.5), so the input is placed
end to end from the timeline's start. **Rule** (for what the sideband did not hear, e.g. while it
reconnected): when the input falls more than ``RESYNC_MS`` behind the output's position, it is moved up
to it; the gap stays silent.

`LiveAudioRecorder` (an agent observer) mixes the two into one stereo WAV (the user left, the model
right) and streams it to the "recordings" storage a chunk at a time, through the same `CallRecording`
and `RecordingChunk` rows as the browser's uploads: chunk 0 is the WAV header, rewritten with the real
sizes when the recording closes, chunks 1.. the samples. Memory is bounded: at most ``chunk_ms`` +
``max_lag_ms`` of audio is held, copies that arrive after their place was written are dropped (counted),
and the whole is bounded by VOICE_RECORDING_MAX_BYTES. Nothing is recorded without the user's consent
(`VoiceSession.recording_consent`, decided when the session was created, as for Realtime calls).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import struct
import sys
from array import array
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.files.base import ContentFile
from django.utils import timezone

from voice import call_audio
from voice.agent import Observer, VoiceAgent
from voice.models import CallRecording, RecordingChunk, VoiceSession
from voice.realtime.events import RealtimeEvent
from voice.realtime.gptlive_events import LiveAudioCopy

logger = logging.getLogger(__name__)

RATE = 24_000  # the sideband's copies, whatever the call's codec (the reference, 2.3)
CHANNELS = 2
FRAME_BYTES = 2 * CHANNELS
HEADER_BYTES = 44
CONTENT_TYPE = "audio/wav"
# A copy is 100 ms in the emulator; this refuses one that claims to be minutes long.
MAX_COPY_MS = 5_000
RESYNC_MS = 1_000
# An output copy this far ahead of everything heard so far is not believed (a bogus start_ms).
MAX_JUMP_MS = 60_000
DEFAULT_CHUNK_MS = 5_000
DEFAULT_MAX_LAG_MS = 5_000


def wav_header(data_bytes: int) -> bytes:
    """A canonical 44-byte PCM WAV header for stereo 16-bit 24 kHz with ``data_bytes`` of samples."""
    return (b"RIFF" + struct.pack("<I", min(0xFFFFFFFF, 36 + data_bytes)) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, CHANNELS, RATE, RATE * FRAME_BYTES, FRAME_BYTES, 16)
            + b"data" + struct.pack("<I", min(0xFFFFFFFF, data_bytes)))


def _samples(audio: str) -> array | None:
    """A copy's base64 PCM16LE as samples, or None when it is not that (or absurdly long)."""
    if not audio or len(audio) > (MAX_COPY_MS * RATE // 1000) * 2 * 4 // 3 + 8:
        return None
    try:
        raw = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) % 2:
        return None
    samples = array("h", raw)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


class LiveAudioRecorder(Observer):
    """Assembles one Live session's stereo recording from its `LiveAudioCopy` events (module docstring).

    Use from the event loop only; `close()` (called by the agent when its run ends) writes what is left
    and the final header. A process that takes the call over starts another one, which goes on after
    what was written."""

    def __init__(self, session: VoiceSession, *, chunk_ms: int = DEFAULT_CHUNK_MS,
                 max_lag_ms: int = DEFAULT_MAX_LAG_MS, max_bytes: int | None = None) -> None:
        self.session = session
        self.chunk_frames = max(1, chunk_ms * RATE // 1000)
        self.max_lag_frames = max_lag_ms * RATE // 1000
        self.max_bytes = max_bytes if max_bytes is not None else settings.VOICE_RECORDING_MAX_BYTES
        self.base = 0                  # the first frame not yet written (on the session's timeline)
        self.buffer = array("h")       # interleaved frames from `base` on
        self.input_at = 0              # where the next input copy goes
        self.output_end = 0            # the end of the latest output copy
        self.next_index = 0
        self.size_bytes = 0            # stored, header included
        self.dropped = 0               # copies that came too late or were not audio
        self.full = False              # the size limit was reached: nothing more is kept
        self.failed = False
        self._recording: CallRecording | None = None
        self._writes: asyncio.Lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._closing: asyncio.Task[None] | None = None

    async def start(self, agent: VoiceAgent | None) -> None:
        # Observer.start takes an agent, but the recorder never reads it: it also runs without one.
        await super().start(agent)  # type: ignore[arg-type]  # Observer.agent itself is Optional
        written = await database_sync_to_async(self._written_frames)()
        # Taken over from another process: go on after what it wrote (earlier copies are not replayed).
        self.base = self.input_at = self.output_end = max(self.base, written)

    def _written_frames(self) -> int:
        recording = CallRecording.objects.filter(session=self.session, content_type=CONTENT_TYPE).first()
        return 0 if recording is None else max(0, recording.size_bytes - HEADER_BYTES) // FRAME_BYTES

    # --- intake ------------------------------------------------------------------------------------

    async def on_event(self, event: RealtimeEvent) -> None:
        if not isinstance(event, LiveAudioCopy) or self._closed or self.full or self.failed:
            return
        samples = _samples(event.audio)
        if samples is None:
            self._drop("a copy that is not PCM16 audio")
            return
        if event.direction == "input":
            if self.input_at + RESYNC_MS * RATE // 1000 < self.output_end:
                self.input_at = max(self.input_at, self.output_end - len(samples))
            at = self.input_at
            self.input_at += len(samples)
            self.place(0, at, samples)
        else:
            at = event.start_ms * RATE // 1000 if event.start_ms is not None and event.start_ms >= 0 \
                else self.output_end
            if at > max(self.output_end, self.input_at) + MAX_JUMP_MS * RATE // 1000:
                self._drop("an output copy placed implausibly far ahead")
                return
            self.output_end = max(self.output_end, at + len(samples))
            self.place(1, at, samples)
        self._write_ready()

    def place(self, channel: int, at: int, samples: array) -> None:
        """Put mono ``samples`` on ``channel`` from frame ``at``; what is before ``base`` was written."""
        if at < self.base:
            skip = self.base - at
            if skip >= len(samples):
                self._drop("a copy that came after its place was written")
                return
            samples, at = samples[skip:], self.base
        end = at + len(samples)
        held = len(self.buffer) // CHANNELS
        if end > held + self.base:
            self.buffer.extend(array("h", bytes((end - self.base - held) * FRAME_BYTES)))  # silence until heard
        start = (at - self.base) * CHANNELS + channel
        self.buffer[start:start + len(samples) * CHANNELS:CHANNELS] = samples

    def _drop(self, what: str) -> None:
        if not self.dropped:
            logger.info("Session %s recording: dropped %s (and counts any more)", self.session.pk, what)
        self.dropped += 1

    def _write_ready(self) -> None:
        """Cut chunks that are complete on both sides, or that the slower side has fallen too far behind."""
        held = len(self.buffer) // CHANNELS
        settled = min(self.input_at, self.output_end) - self.base
        while held >= self.chunk_frames and (settled >= self.chunk_frames
                                             or held - self.chunk_frames >= self.max_lag_frames):
            self._cut(self.chunk_frames)
            held -= self.chunk_frames
            settled -= self.chunk_frames

    def _cut(self, frames: int) -> None:
        data = self.buffer[:frames * CHANNELS]
        del self.buffer[:frames * CHANNELS]
        self.base += frames
        if sys.byteorder == "big":
            data.byteswap()
        self._spawn(data.tobytes())

    def _spawn(self, data: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._store(data), name=f"live-audio-{self.session.pk}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- storage -----------------------------------------------------------------------------------

    async def _store(self, data: bytes) -> None:
        async with self._writes:  # in order, one at a time
            if self.full or self.failed:
                return
            try:
                await database_sync_to_async(self._store_sync)(data)
            except Exception:
                self.failed = True
                logger.exception("Session %s: the call's recording could not be stored; the rest is not kept",
                                 self.session.pk)

    def _store_sync(self, data: bytes) -> None:
        if self._recording is None:
            self._recording = self._open()
        if self.size_bytes + len(data) > self.max_bytes:
            self.full = True
            logger.info("Session %s: the recording reached its size limit; the rest of the call is not kept",
                        self.session.pk)
            return
        self._save_chunk(self.next_index, data)
        self.next_index += 1

    def _open(self) -> CallRecording:
        """This session's recording row: a new one with its header chunk, or the one a process before
        this one was writing (the call was taken over), which goes on after its last chunk."""
        recording = CallRecording.objects.filter(session=self.session).first()
        if recording is None:
            days = (self.session.config.recording_retention_days if self.session.config is not None
                    else call_audio.DEFAULT_RETENTION_DAYS)
            now = timezone.now()
            recording = CallRecording.objects.create(
                session=self.session, offset_ms=0, content_type=CONTENT_TYPE, started_at=now,
                delete_after=now + timedelta(days=days))
            self._recording = recording
            self._save_chunk(0, wav_header(0xFFFFFFFF - 36))  # streaming: the real sizes come at close
            self.next_index = 1
            return recording
        self.next_index, self.size_bytes = recording.chunk_count, recording.size_bytes
        return recording

    def _save_chunk(self, index: int, data: bytes) -> None:
        assert self._recording is not None
        recording = self._recording
        digest = hashlib.sha256(data).hexdigest()
        name = call_audio.storage().save(f"{self.session.pk}/{index:06d}-{digest[:12]}.wav", ContentFile(data))
        RecordingChunk.objects.create(recording=recording, index=index, size=len(data), sha256=digest, name=name)
        self.size_bytes += len(data)
        recording.chunk_count = index + 1
        recording.size_bytes = self.size_bytes
        recording.duration_ms = max(0, self.size_bytes - HEADER_BYTES) // FRAME_BYTES * 1000 // RATE
        recording.save(update_fields=["chunk_count", "size_bytes", "duration_ms", "updated_at"])

    def _finish_sync(self) -> None:
        """The header with the real sizes (chunk 0 replaced: same length, new file)."""
        recording = self._recording
        if recording is None:
            return
        header = wav_header(self.size_bytes - HEADER_BYTES)
        old = recording.chunks.filter(index=0).first()
        if old is None or old.size != HEADER_BYTES:
            return
        digest = hashlib.sha256(header).hexdigest()
        if old.sha256 == digest:
            return
        name = call_audio.storage().save(f"{self.session.pk}/000000-{digest[:12]}.wav", ContentFile(header))
        old_name = old.name
        RecordingChunk.objects.filter(pk=old.pk).update(sha256=digest, name=name)
        if old_name != name:
            call_audio.storage().delete(old_name)

    async def close(self) -> None:
        """Write what is held (the call's last seconds) and the final header. Idempotent; the writing goes
        on if the caller is cancelled (the agent's run is cancelled as the call ends), and whoever ends the
        call awaits it again to know the recording is complete."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close(),
                                                                   name=f"live-audio-close-{self.session.pk}")
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self._closed = True
        if not (self.full or self.failed):
            held = len(self.buffer) // CHANNELS
            # Up to where both sides were heard; the rest is the one side's tail, kept too.
            if held:
                self._cut(held)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        async with self._writes:
            try:
                await database_sync_to_async(self._finish_sync)()
            except Exception:
                logger.exception("Session %s: the recording's header could not be finished", self.session.pk)
        if self.dropped:
            logger.info("Session %s recording: %d audio copies dropped", self.session.pk, self.dropped)


def records(session: VoiceSession) -> bool:
    """Whether a Live session's audio is recorded on the server: its config records and the user agreed."""
    return bool(session.recording_consent) and call_audio.recording_policy(session) != "off"
