"""One emulated Realtime call: the aiortc peer, the ``oai-events`` channel and the scripted conversation.

A call answers the browser's offer, sends ``session.created`` once the data channel opens, and then
plays its script. Every server event goes to the data channel and to every attached sideband
WebSocket, with the same ``event_id``; every client event, from either path, goes through
:meth:`EmulatedCall.handle_client_message`, so the sideband drives the script exactly as the data
channel does.

``session.created`` is per connection, as OpenAI does it: the data channel gets one when it opens, and
each sideband gets its own (the current session, its own ``event_id``) the moment it attaches, whether
early (the server's usual order: ``/calls``, then the sideband, then the browser's answer) or late (a
reconnect). There is no replay: events emitted while no sideband is attached are not delivered to a
sideband that attaches later, which is the gap a reconnecting client must report.

Turn taking (deliberately simpler than OpenAI's VAD, so runs repeat exactly):

* the microphone track is decoded and the RMS of each frame compared with ``vad.threshold``;
* energy for ``vad.min_speech_ms`` -> ``speech_started``; quiet for the silence time, or an utterance
  reaching ``vad.max_utterance_ms`` (a fake microphone never stops beeping) -> ``speech_stopped``;
* while a user turn or a response is in progress, while the assistant's audio plays and for
  ``vad.cooldown_ms`` after it, the microphone is ignored, unless the script turns on
  ``vad.barge_in``: then speech over the assistant's audio interrupts it (below);
* once the script's turns are used up (and ``repeat`` is off), speech is ignored.

Barge-in (``vad.barge_in``, and the session's ``turn_detection.interrupt_response``, on by default),
as OpenAI's server VAD does it on WebRTC, where the server knows how much of its audio was played:
speech while the assistant's audio plays gives ``input_audio_buffer.speech_started``; a response still
being generated is cancelled (its ``response.done`` says ``cancelled``, reason ``turn_detected``);
then ``output_audio_buffer.cleared`` names the response whose audio stopped, and
``conversation.item.truncated`` cuts the assistant item at ``audio_end_ms``, the audio played so far
(its transcript shortened to match). The user's turn then goes on as any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import math
import operator
import sys
import time
from array import array
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .script import Script, Timing, Turn
from .validation import (
    EmulatorError,
    check_client_event,
    new_id,
    validate_item,
    validate_response_params,
    validate_session,
)

logger = logging.getLogger("realtime_emulator.call")

DATA_CHANNEL_LABEL = "oai-events"
SAMPLE_RATE = 48_000  # Opus' native rate: no resampling on the way out
FRAME_MS = 20
MIN_COMMIT_MS = 100  # OpenAI refuses to commit less than 100 ms of audio
MIC_SILENCE_POLL_S = 0.1  # a muted or DTX microphone sends nothing; treat the gap as silence
# Streamed turns (``start_stream``) have no pauses at all: events come as fast as the call makes them, and
# the sidebands' pace (``sideband_rate``) sets the rate they go out at. Zero audio per word means each
# reply's audio starts and stops at once (no playout to wait for); the events are those of any turn.
STREAM_TIMING = Timing.model_construct(
    commit_ms=0, transcription_ms=0, response_ms=0, delta_ms=0, audio_ms_per_word=0, synthetic_speech_ms=0
)
STREAM_POLL_S = 0.005  # how often a stream looks whether its turn (and any tool round trip) is over
STREAM_TOOL_WAIT_S = 30.0  # a tool call nobody answers within this ends the stream


# --- audio ------------------------------------------------------------------------------------------


def sine_frame_bytes(samples: int, frequency: float, amplitude: float, sample_rate: int = SAMPLE_RATE) -> bytes:
    """One frame of s16 mono sine; with a whole number of cycles per frame it repeats seamlessly."""
    peak = int(max(0.0, min(1.0, amplitude)) * 32767)
    values = array("h", (int(peak * math.sin(2 * math.pi * frequency * i / sample_rate)) for i in range(samples)))
    if sys.byteorder == "big":
        values.byteswap()
    return values.tobytes()


class ToneTrack(MediaStreamTrack):
    """Audio track that sends a sine tone while ``playing`` and silence otherwise, paced in real time.

    The emulator's voice: a listener (or a test) hears the tone exactly while the model "speaks".
    Tests also use it as a loud fake microphone.
    """

    kind = "audio"

    def __init__(self, *, frequency: float = 500.0, amplitude: float = 0.3, playing: bool = False) -> None:
        super().__init__()
        self.playing = playing
        self._samples = SAMPLE_RATE * FRAME_MS // 1000
        self._tone = sine_frame_bytes(self._samples, frequency, amplitude)
        self._silence = bytes(len(self._tone))
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        # Pace by the clock like a capture device; the RTP sender pulls frames as fast as we return them.
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += self._samples
            delay = self._start + self._pts / SAMPLE_RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        frame = av.AudioFrame(format="s16", layout="mono", samples=self._samples)
        payload = self._tone if self.playing else self._silence
        plane = frame.planes[0]
        plane.update(payload.ljust(plane.buffer_size, b"\0")[: plane.buffer_size])
        frame.pts = self._pts
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = Fraction(1, SAMPLE_RATE)
        return frame


def frame_rms(frame: av.AudioFrame) -> float:
    """RMS of a packed s16 frame as a fraction of full scale (0.0 silence .. ~0.707 full-scale sine)."""
    channels = len(frame.layout.channels)
    data = bytes(frame.planes[0])[: frame.samples * channels * 2]
    samples = array("h")
    samples.frombytes(data[: len(data) - len(data) % 2])
    if not samples:
        return 0.0
    if sys.byteorder == "big":
        samples.byteswap()
    return math.sqrt(sum(map(operator.mul, samples, samples)) / len(samples)) / 32768.0


# --- helpers -------------------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    """Split text into word chunks that concatenate back to the text (each keeps its leading space)."""
    chunks: list[str] = []
    for index, word in enumerate(text.split(" ")):
        chunks.append(word if index == 0 else " " + word)
    return [chunk for chunk in chunks if chunk]


def _pieces(text: str, count: int) -> list[str]:
    size = max(1, math.ceil(len(text) / count))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _text_tokens(text: str | None) -> int:
    # Close enough to a BPE tokenizer for usage figures that look real; nothing depends on exactness.
    return max(1, math.ceil(len(text) / 4)) if text else 0


class _Interrupted(Exception):
    """The running response was cancelled (response.cancel, or the call ended)."""


@dataclass
class _Speech:
    item_id: str
    turn: Turn
    start_ms: float


@dataclass
class _Response:
    id: str
    params: dict[str, Any]
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_reason: str = "client_cancelled"
    task: asyncio.Task[None] | None = None


@dataclass
class _Playout:
    response_id: str
    item_id: str
    end: float
    cleared: bool = False
    start: float = field(default_factory=time.monotonic)


@dataclass
class _AwaitingTool:
    call_id: str
    turn: Turn
    output: str | None = None


@dataclass
class _ItemMeta:
    text_tokens: int = 0
    audio_tokens: int = 0
    audio_ms: int = 0  # assistant audio produced (truncate limit) or user audio committed


@dataclass
class _PendingTranscription:
    item_id: str
    text: str
    when: str


class EmulatedCall:
    """A WebRTC call with the emulated model; created by ``POST /v1/realtime/calls``."""

    def __init__(
        self,
        call_id: str,
        session: dict[str, Any],
        script: Script,
        *,
        max_call_seconds: float = 3600.0,
        connect_timeout: float = 20.0,
    ) -> None:
        self.id = call_id
        self.session = session
        self.script = script
        self.conversation_id = new_id("conv")
        self.created_at = time.time()
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.client_events: list[dict[str, Any]] = []
        self.server_events: list[dict[str, Any]] = []
        self.max_call_seconds = max_call_seconds
        self.connect_timeout = connect_timeout
        self._connected = asyncio.Event()

        self._pc: RTCPeerConnection | None = None
        self._tone = ToneTrack()
        self._dc: RTCDataChannel | None = None
        self._expect_dc = True
        self._session_announced = False
        self._dc_backlog: list[str] = []
        # Azure's ?webrtcfilter=on: the data channel carries only these events (None: every event).
        self.dc_filter: frozenset[str] | None = None
        self._sidebands: list[asyncio.Queue[dict[str, Any] | None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()

        # conversation state
        self._items: dict[str, dict[str, Any]] = {}
        self._meta: dict[str, _ItemMeta] = {}
        self._last_item_id: str | None = None
        self._turn_index = 0
        self._pending_turn: Turn | None = None
        self._awaiting_tool: _AwaitingTool | None = None
        self._pending_transcription: _PendingTranscription | None = None
        self._response: _Response | None = None
        self._last_response_id: str | None = None
        self._playout: _Playout | None = None
        self._voice_locked = False
        self._previous_input = (0, 0)  # (text, audio) input tokens of the last response: the cache

        # microphone / turn taking
        self._mic_ms = 0.0
        self._buffer_ms = 0.0  # uncommitted input audio, for manual input_audio_buffer.commit
        self._loud_ms = 0.0
        self._quiet_ms = 0.0
        self._speech: _Speech | None = None
        self._turn_task: asyncio.Task[None] | None = None
        self._barge_in_task: asyncio.Task[None] | None = None
        self._cooldown_until = 0.0

        # streamed turns (POST /_emulator/calls/{id}/stream): the sidebands' pace, and the stream's state
        self.sideband_rate: float | None = None
        self.sideband_sent = 0
        self.stream: dict[str, Any] | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._timing_override: Timing | None = None

    # --- lifecycle -------------------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.ended_at is None

    async def accept(self, offer_sdp: str) -> str:
        """Answer the offer; return the answer SDP (with ICE candidates, aiortc gathers up front)."""
        # No STUN: aiortc would otherwise contact stun.l.google.com; loopback needs host candidates only.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._pc = pc
        self._expect_dc = "m=application" in offer_sdp

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if channel.label != DATA_CHANNEL_LABEL:
                logger.info("call %s: ignoring data channel %r", self.id, channel.label)
                return
            self._dc = channel

            @channel.on("message")
            def on_message(message: str | bytes) -> None:
                self.handle_client_message(message, source="datachannel")

            @channel.on("close")
            def on_close() -> None:
                self._spawn(self.close("datachannel_closed"))

            # aiortc emits "datachannel" for a remote channel once it is already open.
            self._announce_session()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._spawn(self._read_microphone(track))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            logger.debug("call %s: connection %s", self.id, state)
            if state == "connected":
                self._connected.set()
                if not self._expect_dc:
                    self._announce_session()
            elif state == "closed" or (state == "failed" and self._connected.is_set()):
                await self.close(f"peer_{state}")
            # A peer that never connected fails its ICE checks after about a minute; the call waits for
            # it until connect_timeout instead (_await_connection ends it then), whichever is set.

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            if any(t.kind == "audio" for t in pc.getTransceivers()):
                pc.addTrack(self._tone)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await pc.close()
            self.ended_at = time.time()
            self.end_reason = "invalid_offer"
            raise EmulatorError(f"Invalid SDP offer: {exc}", code="invalid_offer", param="sdp") from exc
        self._spawn(self._expire())
        self._spawn(self._await_connection())
        return pc.localDescription.sdp

    async def close(self, reason: str) -> None:
        """End the call: stop the script, close the peer connection and every sideband socket."""
        if self.ended_at is not None:
            return
        self.ended_at = time.time()
        self.end_reason = reason
        logger.info("call %s ended: %s", self.id, reason)
        if self._response is not None:
            self._response.cancel_reason = "call_ended"
            self._response.cancelled.set()
        self._tone.playing = False
        for queue in self._sidebands:
            queue.put_nowait(None)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if self._dc is not None:
            self._dc.close()
        self._tone.stop()
        if self._pc is not None:
            await self._pc.close()

    async def _await_connection(self) -> None:
        # A browser that POSTed an offer and then vanished would otherwise leave a call "active" for an
        # hour (ICE keeps waiting for candidates), and tests looking for zombie calls would see one.
        try:
            await asyncio.wait_for(self._connected.wait(), self.connect_timeout)
        except TimeoutError:
            await self.close("connect_timeout")

    async def _expire(self) -> None:
        await asyncio.sleep(self.max_call_seconds)
        minutes = round(self.max_call_seconds / 60)
        self._emit(
            "error",
            error={
                "type": "invalid_request_error",
                "code": "session_expired",
                "message": f"Your session hit the maximum duration of {minutes} minutes.",
                "param": None,
                "event_id": None,
            },
        )
        await self.close("session_expired")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("call %s: task failed", self.id, exc_info=task.exception())

    # --- event plumbing --------------------------------------------------------------------------------

    def attach_sideband(self) -> asyncio.Queue[dict[str, Any] | None]:
        """A queue receiving every later server event; ``None`` means the call ended."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        if self.ended_at is not None:
            queue.put_nowait(None)
        else:
            # Per connection, like OpenAI: the attaching socket learns the session it is attached to.
            queue.put_nowait(
                {"type": "session.created", "event_id": new_id("event", 10), "session": copy.deepcopy(self.session)}
            )
        self._sidebands.append(queue)
        return queue

    @property
    def sideband_count(self) -> int:
        return len(self._sidebands)

    def detach_sideband(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        with contextlib.suppress(ValueError):
            self._sidebands.remove(queue)

    def _emit(self, type_: str, *, first: bool = False, to_sidebands: bool = True, **fields: Any) -> dict[str, Any]:
        event = {"type": type_, "event_id": new_id("event", 10), **fields}
        self.server_events.append(event)
        text = json.dumps(event)
        if self.dc_filter is not None and type_ not in self.dc_filter:
            pass  # filtered off the browser's channel; the sidebands still hear it
        elif self._dc is not None and self._session_announced and self._dc.readyState == "open":
            self._send_dc(text)
        elif self._expect_dc and self.ended_at is None:
            # Before the channel opens (e.g. a sideband update): keep order, deliver once it opens.
            if first:
                self._dc_backlog.insert(0, text)
            else:
                self._dc_backlog.append(text)
        if to_sidebands:
            for queue in self._sidebands:
                queue.put_nowait(event)
        return event

    def _announce_session(self) -> None:
        if self._session_announced:
            return
        # The data channel's own session.created; each sideband got its own when it attached.
        self._emit("session.created", first=True, to_sidebands=False, session=copy.deepcopy(self.session))
        self._session_announced = True
        if self._dc is not None:
            for text in self._dc_backlog:
                self._send_dc(text)
        self._dc_backlog.clear()

    def _send_dc(self, text: str) -> None:
        try:
            self._dc.send(text)  # type: ignore[union-attr]
        except Exception:  # the channel can close between the state check and the send
            logger.debug("call %s: dropped an event on a closing data channel", self.id)

    def _error(self, err: EmulatorError, client_event_id: str | None) -> None:
        self._emit(
            "error",
            error={
                "type": err.type,
                "code": err.code,
                "message": err.message,
                "param": err.param,
                "event_id": client_event_id,
            },
        )

    # --- client events ---------------------------------------------------------------------------------

    def handle_client_message(self, message: str | bytes | dict[str, Any], source: str) -> None:
        """Handle one client event from the data channel or a sideband socket (same rules for both)."""
        if self.ended_at is not None:
            return
        if isinstance(message, dict):
            event: Any = message
        else:
            text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
            try:
                event = json.loads(text)
            except ValueError:
                self.client_events.append({"source": source, "received_at": time.time(), "raw": text[:2000]})
                self._error(EmulatorError("We could not parse the JSON body of your event.", code="invalid_json"), None)
                return
        self.client_events.append({"source": source, "received_at": time.time(), "event": event})
        event_id = event.get("event_id") if isinstance(event, dict) else None
        if not isinstance(event_id, str):
            event_id = None
        try:
            check_client_event(event)
            handler = self._handlers[event["type"]]
            handler(self, event)
        except EmulatorError as err:
            self._error(err, event_id)

    def _on_session_update(self, event: dict[str, Any]) -> None:
        if "session" not in event:
            raise EmulatorError(
                "Missing required parameter: 'session'.", code="missing_required_parameter", param="session"
            )
        self.session = validate_session(event["session"], current=self.session, voice_locked=self._voice_locked)
        self._emit("session.updated", session=copy.deepcopy(self.session))

    def _on_audio_append(self, event: dict[str, Any]) -> None:
        # Over WebRTC the microphone track carries the audio; appended audio only lengthens the buffer.
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise EmulatorError(
                "Missing required parameter: 'audio'.", code="missing_required_parameter", param="audio"
            )
        self._buffer_ms += len(audio) * 3 / 4 / 48  # base64 of 24 kHz PCM16: 48 bytes per ms

    def _on_audio_commit(self, event: dict[str, Any]) -> None:
        if self._buffer_ms < MIN_COMMIT_MS:
            raise EmulatorError(
                f"Error committing input audio buffer: buffer too small. Expected at least {MIN_COMMIT_MS}ms "
                f"of audio, but buffer only has {self._buffer_ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        turn = self._next_turn() or self._fallback_turn(None)
        item_id = new_id("item")
        audio_ms = int(self._buffer_ms)
        self._turn_task = self._spawn(self._finish_user_turn(item_id, turn, audio_ms, manual=True))

    def _on_audio_clear(self, event: dict[str, Any]) -> None:
        self._buffer_ms = 0.0
        self._emit("input_audio_buffer.cleared")

    def _on_item_create(self, event: dict[str, Any]) -> None:
        if "item" not in event:
            raise EmulatorError("Missing required parameter: 'item'.", code="missing_required_parameter", param="item")
        item = validate_item(event["item"])
        previous = event.get("previous_item_id")
        if previous is not None and previous != "root" and previous not in self._items:
            raise EmulatorError(
                f"Previous item with id '{previous}' not found.", code="item_not_found", param="previous_item_id"
            )
        if item.get("id") in self._items:
            raise EmulatorError(f"Item with id '{item['id']}' already exists.", code="invalid_value", param="item.id")
        if item["type"] == "function_call_output":
            calls = {i.get("call_id") for i in self._items.values() if i["type"] == "function_call"}
            if item["call_id"] not in calls:
                raise EmulatorError(
                    f"Tool call with call_id '{item['call_id']}' not found in conversation.",
                    code="invalid_value",
                    param="item.call_id",
                )
            if self._awaiting_tool is not None and self._awaiting_tool.call_id == item["call_id"]:
                self._awaiting_tool.output = item["output"]
        item.setdefault("id", new_id("item"))
        item["object"] = "realtime.item"
        item["status"] = "completed"
        meta = _ItemMeta()
        if item["type"] == "message":
            for part in item["content"]:
                meta.text_tokens += _text_tokens(part.get("text") or part.get("transcript"))
            if item["role"] == "user":
                # A typed user message takes the next scripted turn, so text sessions follow the script too.
                self._pending_turn = self._next_turn()
        else:
            meta.text_tokens = _text_tokens(item.get("output") or item.get("arguments"))
        self._add_item(item, meta, previous_item_id=previous if previous is not None else self._last_item_id)

    def _on_item_retrieve(self, event: dict[str, Any]) -> None:
        item = self._find_item(event)
        self._emit("conversation.item.retrieved", item=copy.deepcopy(item))

    def _on_item_delete(self, event: dict[str, Any]) -> None:
        item = self._find_item(event)
        del self._items[item["id"]]
        self._meta.pop(item["id"], None)
        if self._last_item_id == item["id"]:
            self._last_item_id = next(reversed(self._items), None)
        self._emit("conversation.item.deleted", item_id=item["id"])

    def _on_item_truncate(self, event: dict[str, Any]) -> None:
        for key in ("item_id", "content_index", "audio_end_ms"):
            if key not in event:
                raise EmulatorError(
                    f"Missing required parameter: '{key}'.", code="missing_required_parameter", param=key
                )
        item = self._find_item(event)
        content_index = event["content_index"]
        audio_end_ms = event["audio_end_ms"]
        for key, value in (("content_index", content_index), ("audio_end_ms", audio_end_ms)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise EmulatorError(
                    f"Invalid '{key}': expected a non-negative integer.", code="invalid_value", param=key
                )
        content = item.get("content") or []
        if (
            item["type"] != "message"
            or item.get("role") != "assistant"
            or content_index >= len(content)
            or content[content_index].get("type") != "output_audio"
        ):
            raise EmulatorError(
                "Only assistant messages with audio content can be truncated.", code="invalid_value", param="item_id"
            )
        produced = self._meta.get(item["id"], _ItemMeta()).audio_ms
        if audio_end_ms > produced:
            raise EmulatorError(
                f"Audio content of {produced}ms is already shorter than {audio_end_ms}ms",
                code="invalid_value",
                param="audio_end_ms",
            )
        self._truncate(item, content_index, audio_end_ms)

    def _truncate(self, item: dict[str, Any], content_index: int, audio_end_ms: int) -> None:
        """Cut an assistant item's audio (and its transcript, in proportion) at ``audio_end_ms``."""
        produced = self._meta.get(item["id"], _ItemMeta()).audio_ms
        part = item["content"][content_index]
        words = _words(part.get("transcript") or "")
        keep = math.floor(len(words) * audio_end_ms / produced) if produced else 0
        part["transcript"] = "".join(words[:keep])
        self._meta.setdefault(item["id"], _ItemMeta()).audio_ms = audio_end_ms
        self._emit(
            "conversation.item.truncated", item_id=item["id"], content_index=content_index, audio_end_ms=audio_end_ms
        )

    def _on_response_create(self, event: dict[str, Any]) -> None:
        params = validate_response_params(event.get("response"))
        if self._response is not None:
            raise EmulatorError(
                f"Conversation already has an active response in progress: {self._response.id}. Wait until "
                "the response is finished before creating a new one.",
                code="conversation_already_has_active_response",
            )
        self._start_response(params)

    def _on_response_cancel(self, event: dict[str, Any]) -> None:
        response = self._response
        wanted = event.get("response_id")
        if response is None or (wanted is not None and wanted != response.id):
            raise EmulatorError("Cancellation failed: no active response found.", code="response_cancel_not_active")
        response.cancel_reason = "client_cancelled"
        response.cancelled.set()

    def _on_output_audio_clear(self, event: dict[str, Any]) -> None:
        playout = self._playout
        if playout is not None:
            playout.cleared = True
            self._tone.playing = False
        # OpenAI's event names the response that produced the audio, always as a string. Before any
        # response there is no audio and no such id: nothing is cleared and nothing is announced.
        response_id = (
            playout.response_id
            if playout is not None
            else self._response.id
            if self._response is not None
            else self._last_response_id
        )
        if response_id is not None:
            self._emit("output_audio_buffer.cleared", response_id=response_id)

    _handlers: dict[str, Callable[[EmulatedCall, dict[str, Any]], None]] = {
        "session.update": _on_session_update,
        "input_audio_buffer.append": _on_audio_append,
        "input_audio_buffer.commit": _on_audio_commit,
        "input_audio_buffer.clear": _on_audio_clear,
        "conversation.item.create": _on_item_create,
        "conversation.item.retrieve": _on_item_retrieve,
        "conversation.item.delete": _on_item_delete,
        "conversation.item.truncate": _on_item_truncate,
        "response.create": _on_response_create,
        "response.cancel": _on_response_cancel,
        "output_audio_buffer.clear": _on_output_audio_clear,
    }

    # --- conversation store -----------------------------------------------------------------------------

    def _find_item(self, event: dict[str, Any]) -> dict[str, Any]:
        item_id = event.get("item_id")
        if not isinstance(item_id, str):
            raise EmulatorError(
                "Missing required parameter: 'item_id'.", code="missing_required_parameter", param="item_id"
            )
        if item_id not in self._items:
            raise EmulatorError(f"Item with item_id not found: {item_id}", code="item_not_found", param="item_id")
        return self._items[item_id]

    def _add_item(
        self, item: dict[str, Any], meta: _ItemMeta, *, previous_item_id: str | None, done: bool = True
    ) -> str | None:
        """Store an item, chain it after ``previous_item_id`` and announce it (added, then done)."""
        self._items[item["id"]] = item
        self._meta[item["id"]] = meta
        self._last_item_id = item["id"]
        self._emit("conversation.item.added", previous_item_id=previous_item_id, item=copy.deepcopy(item))
        if done:
            self._emit("conversation.item.done", previous_item_id=previous_item_id, item=copy.deepcopy(item))
        return previous_item_id

    # --- script -------------------------------------------------------------------------------------------

    def _next_turn(self) -> Turn | None:
        turns = self.script.turns
        if self._turn_index >= len(turns):
            if not self.script.repeat:
                return None
            self._turn_index = 0
        turn = turns[self._turn_index]
        self._turn_index += 1
        return turn

    def _fallback_turn(self, text: str | None) -> Turn:
        return Turn(user=text or "(unscripted speech)", assistant=self.script.fallback_reply)

    def _timing(self, turn: Turn | None) -> Timing:
        if self._timing_override is not None:
            return self._timing_override
        return self.script.timing_for(turn)

    def _transcription_enabled(self) -> bool:
        return self.session["audio"]["input"].get("transcription") is not None

    def _turn_detection(self) -> dict[str, Any] | None:
        return self.session["audio"]["input"].get("turn_detection")

    def busy(self) -> bool:
        """A user turn, a response or assistant audio is in progress."""
        return (
            self._speech is not None
            or (self._turn_task is not None and not self._turn_task.done())
            or self._response is not None
            or self._playout is not None
        )

    def switch_script(self, script: Script) -> None:
        self.script = script
        self._turn_index = 0

    # --- microphone and turn taking -----------------------------------------------------------------------

    async def _read_microphone(self, track: MediaStreamTrack) -> None:
        resampler: av.AudioResampler | None = None
        while self.ended_at is None:
            try:
                frame = await asyncio.wait_for(track.recv(), MIC_SILENCE_POLL_S)
            except TimeoutError:
                self._on_mic_audio(MIC_SILENCE_POLL_S * 1000, 0.0)
                continue
            except MediaStreamError:
                return
            if not isinstance(frame, av.AudioFrame):  # an audio track yields audio frames; be sure of it
                continue
            if frame.format.name != "s16":
                resampler = resampler or av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
                frames = resampler.resample(frame)
                if not frames:
                    continue
                frame = frames[0]
            duration_ms = frame.samples * 1000 / (frame.sample_rate or SAMPLE_RATE)
            self._on_mic_audio(duration_ms, frame_rms(frame))

    def _mic_ignored(self) -> bool:
        if self._turn_detection() is None:
            return True
        if self._speech is not None or self._may_barge_in():
            return False
        # While a tool runs the script waits for its output; a new turn now would steal the reply.
        waiting_for_tool = self._awaiting_tool is not None and self._awaiting_tool.output is None
        return self.busy() or waiting_for_tool or time.monotonic() < self._cooldown_until

    def _on_mic_audio(self, duration_ms: float, rms: float) -> None:
        """Feed one frame's energy to the turn detector (see the module docstring)."""
        self._mic_ms += duration_ms
        self._buffer_ms += duration_ms
        if self._mic_ignored():
            self._loud_ms = 0.0
            return
        vad = self.script.vad
        loud = rms >= vad.threshold
        speech = self._speech
        if speech is None:
            self._loud_ms = self._loud_ms + duration_ms if loud else 0.0
            if loud and self._loud_ms >= vad.min_speech_ms:
                turn = self._next_turn()
                if turn is None:
                    return  # the script is over: the emulated model no longer listens
                start_ms = max(0.0, self._mic_ms - self._loud_ms)
                self._start_speech(turn, start_ms)
                self._quiet_ms = 0.0
            return
        self._quiet_ms = 0.0 if loud else self._quiet_ms + duration_ms
        silence_ms = vad.silence_ms or int((self._turn_detection() or {}).get("silence_duration_ms") or 500)
        if self._quiet_ms >= silence_ms:
            self._stop_speech(self._mic_ms - self._quiet_ms)
        elif self._mic_ms - speech.start_ms >= vad.max_utterance_ms:
            self._stop_speech(self._mic_ms)

    def _start_speech(self, turn: Turn, start_ms: float) -> None:
        interrupting = self._may_barge_in()
        self._speech = _Speech(item_id=new_id("item"), turn=turn, start_ms=start_ms)
        self._emit("input_audio_buffer.speech_started", audio_start_ms=int(start_ms), item_id=self._speech.item_id)
        if interrupting:
            self._barge_in()

    def _may_barge_in(self) -> bool:
        """Speech now would interrupt the assistant's audio (see the module docstring)."""
        playout = self._playout
        if not self.script.vad.barge_in or playout is None or playout.cleared:
            return False
        if not (self._turn_detection() or {}).get("interrupt_response", True):
            return False
        user_turn_running = self._turn_task is not None and not self._turn_task.done()
        barging = self._barge_in_task is not None and not self._barge_in_task.done()
        return self._speech is None and not user_turn_running and not barging

    def _barge_in(self) -> None:
        playout = self._playout
        assert playout is not None
        response = self._response
        if response is not None:
            response.cancel_reason = "turn_detected"
            response.cancelled.set()
        self._barge_in_task = self._spawn(self._finish_barge_in(playout, response))

    async def _finish_barge_in(self, playout: _Playout, response: _Response | None) -> None:
        # The cancelled response ends at its next step; its item is complete (status incomplete) before
        # the audio is cleared and the item truncated, as OpenAI orders them.
        if response is not None and response.task is not None:
            await asyncio.wait({response.task})
        if playout.cleared:  # an output_audio_buffer.clear got there first
            return
        played_ms = int((time.monotonic() - playout.start) * 1000)
        playout.cleared = True
        if self._playout is playout:
            # No cooldown: the user is speaking, and the mic must keep hearing them.
            self._playout = None
            self._tone.playing = False
        self._emit("output_audio_buffer.cleared", response_id=playout.response_id)
        item = self._items.get(playout.item_id)
        if item is not None and item.get("content"):
            produced = self._meta.get(playout.item_id, _ItemMeta()).audio_ms
            self._truncate(item, 0, max(0, min(played_ms, produced)))

    def _stop_speech(self, end_ms: float) -> None:
        speech = self._speech
        if speech is None:
            return
        self._speech = None
        self._loud_ms = 0.0
        self._emit("input_audio_buffer.speech_stopped", audio_end_ms=int(end_ms), item_id=speech.item_id)
        audio_ms = int(end_ms - speech.start_ms)
        self._turn_task = self._spawn(self._finish_user_turn(speech.item_id, speech.turn, audio_ms))

    def trigger_turn(self, text: str | None = None) -> str:
        """Run the next user turn without microphone energy (control endpoint); return the item id."""
        if self.ended_at is not None:
            raise RuntimeError("the call has ended")
        if self.busy():
            raise RuntimeError("a turn or response is in progress")
        turn = self._next_turn() or self._fallback_turn(text)
        if text:
            turn = turn.model_copy(update={"user": text})
        timing = self._timing(turn)
        item_id = new_id("item")

        async def synthetic() -> None:
            vad_on = self._turn_detection() is not None
            start_ms = self._mic_ms
            if vad_on:
                self._emit("input_audio_buffer.speech_started", audio_start_ms=int(start_ms), item_id=item_id)
            await asyncio.sleep(timing.synthetic_speech_ms / 1000)
            if vad_on:
                self._emit(
                    "input_audio_buffer.speech_stopped",
                    audio_end_ms=int(start_ms + timing.synthetic_speech_ms),
                    item_id=item_id,
                )
            await self._finish_user_turn(item_id, turn, timing.synthetic_speech_ms, manual=not vad_on)

        self._turn_task = self._spawn(synthetic())
        return item_id

    def start_stream(self, turns: int, rate: float | None) -> dict[str, Any]:
        """Play ``turns`` user turns of the script back to back, without pauses (control endpoint), while
        every sideband of the call sends at most ``rate`` events per second (None: as fast as it can).

        The events are exactly those of the same turns played at the script's pace; only their timing
        differs. A turn whose reply is a tool call waits for the client's function_call_output and
        response.create, as a live call does. The pace stays with the call until the next stream."""
        if self.ended_at is not None:
            raise RuntimeError("the call has ended")
        if (self._stream_task is not None and not self._stream_task.done()) or self.busy():
            raise RuntimeError("a turn, a response or a stream is in progress")
        self.sideband_rate = rate
        self.stream = {"turns": turns, "turns_done": 0, "rate": rate, "running": True, "error": None}
        self._stream_task = self._spawn(self._run_stream(turns))
        return self.stream_status()

    def stream_status(self) -> dict[str, Any]:
        """The stream's progress, and how many events the call emitted and its sidebands sent so far."""
        return {**(self.stream or {"running": False}), "events_emitted": len(self.server_events),
                "sideband_events_sent": self.sideband_sent}

    async def _run_stream(self, turns: int) -> None:
        stream = self.stream
        assert stream is not None
        self._timing_override = STREAM_TIMING
        try:
            for _ in range(turns):
                self.trigger_turn()
                deadline = time.monotonic() + STREAM_TOOL_WAIT_S
                # The turn is over when its response (and a tool call's answer and reply) is done.
                while self.busy() or self._awaiting_tool is not None:
                    if time.monotonic() > deadline or self.ended_at is not None:
                        stream["error"] = "the call ended" if self.ended_at is not None else (
                            f"no answer to the tool call within {STREAM_TOOL_WAIT_S:g} s")
                        return
                    await asyncio.sleep(STREAM_POLL_S)
                stream["turns_done"] += 1
        finally:
            self._timing_override = None
            stream["running"] = False

    async def _finish_user_turn(self, item_id: str, turn: Turn, audio_ms: int, *, manual: bool = False) -> None:
        """Commit the user's audio as an item, transcribe it and (with VAD) start the response."""
        timing = self._timing(turn)
        if not manual:
            await asyncio.sleep(timing.commit_ms / 1000)
        if self._barge_in_task is not None and not self._barge_in_task.done():
            await asyncio.wait({self._barge_in_task})  # the interrupted reply is settled first
        previous = self._last_item_id
        self._buffer_ms = 0.0
        self._emit("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        item = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self._add_item(
            item, _ItemMeta(audio_tokens=max(1, audio_ms // 100), audio_ms=audio_ms), previous_item_id=previous
        )
        self._pending_turn = turn

        detection = self._turn_detection()
        auto_response = not manual and detection is not None and detection.get("create_response", True)
        if self._transcription_enabled():
            if turn.transcription == "before_response" or not auto_response:
                await asyncio.sleep(timing.transcription_ms / 1000)
                self._transcribe(item_id, turn.user, audio_ms)
            else:
                self._pending_transcription = _PendingTranscription(item_id, turn.user, turn.transcription)
        if auto_response:
            await asyncio.sleep(timing.response_ms / 1000)
            if self._response is None and self.ended_at is None:
                self._start_response({})
            else:
                self._flush_transcription(None)

    def _transcribe(self, item_id: str, text: str, audio_ms: int | None = None) -> None:
        for chunk in _words(text):
            self._emit(
                "conversation.item.input_audio_transcription.delta", item_id=item_id, content_index=0, delta=chunk
            )
        meta = self._meta.get(item_id)
        audio_tokens = max(1, (audio_ms if audio_ms is not None else meta.audio_ms if meta else 1000) // 100)
        output_tokens = _text_tokens(text)
        self._emit(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=text,
            usage={
                "type": "tokens",
                "total_tokens": audio_tokens + output_tokens,
                "input_tokens": audio_tokens,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
                "output_tokens": output_tokens,
            },
        )
        item = self._items.get(item_id)
        if item is not None:
            item["content"][0]["transcript"] = text
        if meta is not None:
            meta.text_tokens = output_tokens

    def _flush_transcription(self, when: str | None) -> None:
        pending = self._pending_transcription
        if pending is not None and (when is None or pending.when == when):
            self._pending_transcription = None
            self._transcribe(pending.item_id, pending.text)

    # --- responses ----------------------------------------------------------------------------------------

    def _start_response(self, params: dict[str, Any]) -> None:
        response = _Response(id=new_id("resp"), params=params)
        self._response = response
        response.task = self._spawn(self._run_response(response))

    def _tool_offered(self, name: str, params: dict[str, Any]) -> bool:
        tools = params.get("tools", self.session.get("tools") or [])
        choice = params.get("tool_choice", self.session.get("tool_choice", "auto"))
        return choice != "none" and any(t.get("type") == "function" and t.get("name") == name for t in tools)

    def _plan(self, params: dict[str, Any]) -> tuple[str, Turn | None, str]:
        """What this response says: ("function_call", turn, "") or ("message", turn, text)."""
        if params.get("conversation") == "none":
            return "message", None, self.script.fallback_reply
        awaiting = self._awaiting_tool
        if awaiting is not None and awaiting.output is not None and awaiting.turn.tool_call is not None:
            self._awaiting_tool = None
            reply = awaiting.turn.tool_call.reply_with(awaiting.output)
            return "message", awaiting.turn, reply
        turn, self._pending_turn = self._pending_turn, None
        if turn is None:
            return "message", None, self.script.fallback_reply
        if turn.tool_call is not None and self._tool_offered(turn.tool_call.name, params):
            return "function_call", turn, ""
        return "message", turn, turn.assistant

    def _response_object(
        self,
        response: _Response,
        status: str,
        *,
        output: list[dict[str, Any]] | None = None,
        usage: dict[str, Any] | None = None,
        status_details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        params = response.params
        out_audio = self.session["audio"]["output"]
        return {
            "object": "realtime.response",
            "id": response.id,
            "status": status,
            "status_details": status_details,
            "output": copy.deepcopy(output or []),
            "conversation_id": None if params.get("conversation") == "none" else self.conversation_id,
            "output_modalities": params.get("output_modalities", self.session["output_modalities"]),
            "max_output_tokens": params.get("max_output_tokens", self.session["max_output_tokens"]),
            "audio": {
                "output": {
                    "format": copy.deepcopy(out_audio["format"]),
                    "voice": params.get("audio", {}).get("output", {}).get("voice", out_audio["voice"]),
                }
            },
            "usage": usage,
            "metadata": params.get("metadata"),
        }

    async def _pause(self, response: _Response, ms: int) -> None:
        """Sleep ``ms`` unless the response is cancelled first; raise _Interrupted if it is."""
        if ms > 0 and not response.cancelled.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(response.cancelled.wait(), ms / 1000)
        if response.cancelled.is_set():
            raise _Interrupted

    async def _run_response(self, response: _Response) -> None:
        kind, turn, text = self._plan(response.params)
        timing = self._timing(turn)
        self._emit("response.created", response=self._response_object(response, "in_progress"))
        self._emit(
            "rate_limits.updated",
            rate_limits=[
                {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                {"name": "tokens", "limit": 400000, "remaining": 395000, "reset_seconds": 0.75},
            ],
        )
        self._flush_transcription("after_response_created")
        output: list[dict[str, Any]] = []
        status, details = "completed", None
        counts = {"text": 0, "audio": 0}
        try:
            if kind == "function_call" and turn is not None:
                await self._produce_function_call(response, turn, timing, output, counts)
            else:
                incomplete = await self._produce_message(response, text, timing, output, counts)
                if incomplete:
                    status, details = "incomplete", {"type": "incomplete", "reason": "max_output_tokens"}
        except _Interrupted:
            status = "cancelled"
            details = {"type": "cancelled", "reason": response.cancel_reason}
        usage = self._usage(counts["text"], counts["audio"])
        self._response = None
        self._cooldown_until = max(self._cooldown_until, time.monotonic() + self.script.vad.cooldown_ms / 1000)
        self._last_response_id = response.id
        self._emit(
            "response.done",
            response=self._response_object(response, status, output=output, usage=usage, status_details=details),
        )
        self._flush_transcription("after_response_done")

    async def _produce_message(
        self,
        response: _Response,
        text: str,
        timing: Timing,
        output: list[dict[str, Any]],
        counts: dict[str, int],
    ) -> bool:
        """Stream an assistant message; return True if max_output_tokens cut it short."""
        params = response.params
        in_conversation = params.get("conversation") != "none"
        audio = params.get("output_modalities", self.session["output_modalities"]) == ["audio"]
        chunks = _words(text)
        limit = params.get("max_output_tokens", self.session["max_output_tokens"])
        incomplete = isinstance(limit, int) and len(chunks) > limit
        if incomplete:
            chunks = chunks[:limit]
        item_id = new_id("item")
        item: dict[str, Any] = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        ids: dict[str, Any] = {"response_id": response.id, "item_id": item_id, "output_index": 0}
        self._emit("response.output_item.added", response_id=response.id, output_index=0, item=copy.deepcopy(item))
        previous = self._last_item_id
        meta = _ItemMeta()
        if in_conversation:
            self._items[item_id] = item
            self._meta[item_id] = meta
            self._last_item_id = item_id
            self._emit("conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item))
        # OpenAI types the part of response.content_part.* "audio" / "text", while the item's content
        # (conversation.item.*, response.output_item.*) says "output_audio" / "output_text".
        part: dict[str, Any] = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        self._emit("response.content_part.added", **ids, content_index=0, part=copy.deepcopy(part))
        if audio:
            meta.audio_ms = len(chunks) * timing.audio_ms_per_word
            self._start_playout(response.id, item_id, meta.audio_ms)
        sent = ""
        interrupted = False
        try:
            for chunk in chunks:
                await self._pause(response, timing.delta_ms)
                sent += chunk
                if audio:
                    self._emit("response.output_audio_transcript.delta", **ids, content_index=0, delta=chunk)
                else:
                    self._emit("response.output_text.delta", **ids, content_index=0, delta=chunk)
        except _Interrupted:
            interrupted = True
            if audio:
                # Audio already generated keeps playing (as with OpenAI) until output_audio_buffer.clear.
                spoken = len(_words(sent)) * timing.audio_ms_per_word
                meta.audio_ms = spoken
                unspoken_ms = len(chunks) * timing.audio_ms_per_word - spoken
                if self._playout is not None and self._playout.item_id == item_id:
                    self._playout.end -= unspoken_ms / 1000
        if audio:
            self._emit("response.output_audio.done", **ids, content_index=0)
            self._emit("response.output_audio_transcript.done", **ids, content_index=0, transcript=sent)
            part["transcript"] = sent
            self._voice_locked = True
            counts["audio"] = max(1, meta.audio_ms // 50)
        else:
            self._emit("response.output_text.done", **ids, content_index=0, text=sent)
            part["text"] = sent
        counts["text"] = _text_tokens(sent)
        meta.text_tokens = counts["text"]
        meta.audio_tokens = counts["audio"]
        self._emit("response.content_part.done", **ids, content_index=0, part=copy.deepcopy(part))
        item["content"] = [{**part, "type": "output_audio" if audio else "output_text"}]
        item["status"] = "incomplete" if interrupted or incomplete else "completed"
        self._emit("response.output_item.done", response_id=response.id, output_index=0, item=copy.deepcopy(item))
        if in_conversation:
            self._emit("conversation.item.done", previous_item_id=previous, item=copy.deepcopy(item))
        output.append(copy.deepcopy(item))
        if interrupted:
            raise _Interrupted
        return incomplete

    async def _produce_function_call(
        self,
        response: _Response,
        turn: Turn,
        timing: Timing,
        output: list[dict[str, Any]],
        counts: dict[str, int],
    ) -> None:
        spec = turn.tool_call
        assert spec is not None
        call_id = new_id("call", 8)
        arguments = json.dumps(spec.arguments)
        item_id = new_id("item")
        item: dict[str, Any] = {
            "id": item_id,
            "type": "function_call",
            "object": "realtime.item",
            "status": "in_progress",
            "name": spec.name,
            "call_id": call_id,
            "arguments": "",
        }
        ids: dict[str, Any] = {"response_id": response.id, "item_id": item_id, "output_index": 0, "call_id": call_id}
        self._emit("response.output_item.added", response_id=response.id, output_index=0, item=copy.deepcopy(item))
        previous = self._last_item_id
        self._items[item_id] = item
        self._meta[item_id] = _ItemMeta(text_tokens=_text_tokens(arguments))
        self._last_item_id = item_id
        self._emit("conversation.item.added", previous_item_id=previous, item=copy.deepcopy(item))
        for piece in _pieces(arguments, 3):
            await self._pause(response, timing.delta_ms)
            self._emit("response.function_call_arguments.delta", **ids, delta=piece)
        self._emit("response.function_call_arguments.done", **ids, name=spec.name, arguments=arguments)
        item["arguments"] = arguments
        item["status"] = "completed"
        self._emit("response.output_item.done", response_id=response.id, output_index=0, item=copy.deepcopy(item))
        self._emit("conversation.item.done", previous_item_id=previous, item=copy.deepcopy(item))
        output.append(copy.deepcopy(item))
        counts["text"] = _text_tokens(arguments) + 4
        self._awaiting_tool = _AwaitingTool(call_id=call_id, turn=turn)

    def _start_playout(self, response_id: str, item_id: str, audio_ms: int) -> None:
        previous = self._playout
        if previous is not None:
            previous.cleared = True  # superseded: its task ends quietly
            self._emit("output_audio_buffer.stopped", response_id=previous.response_id)
        playout = _Playout(response_id=response_id, item_id=item_id, end=time.monotonic() + audio_ms / 1000)
        self._playout = playout
        self._tone.playing = True
        self._emit("output_audio_buffer.started", response_id=response_id)
        self._spawn(self._run_playout(playout))

    async def _run_playout(self, playout: _Playout) -> None:
        while not playout.cleared:
            remaining = playout.end - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.sleep(min(remaining, 0.05))
        if self._playout is playout:
            self._playout = None
            self._tone.playing = False
            self._cooldown_until = time.monotonic() + self.script.vad.cooldown_ms / 1000
            if not playout.cleared:
                self._emit("output_audio_buffer.stopped", response_id=playout.response_id)

    def _usage(self, output_text: int, output_audio: int) -> dict[str, Any]:
        """Token usage that adds up like OpenAI's: cached tokens are a subset of input tokens."""
        # OpenAI bills a hidden system prompt on top of the instructions; ~120 tokens keeps figures plausible.
        text = 120 + _text_tokens(self.session.get("instructions")) + _text_tokens(json.dumps(self.session["tools"]))
        audio = 0
        for meta in self._meta.values():
            text += meta.text_tokens
            audio += meta.audio_tokens
        # The prompt prefix seen by the previous response is cached in 64-token blocks.
        cached_text = min(text, self._previous_input[0] // 64 * 64)
        cached_audio = min(audio, self._previous_input[1] // 64 * 64)
        self._previous_input = (text, audio)
        input_tokens = text + audio
        output_tokens = output_text + output_audio
        return {
            "total_tokens": input_tokens + output_tokens,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "input_token_details": {
                "text_tokens": text,
                "audio_tokens": audio,
                "image_tokens": 0,
                "cached_tokens": cached_text + cached_audio,
                "cached_tokens_details": {"text_tokens": cached_text, "audio_tokens": cached_audio, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": output_text, "audio_tokens": output_audio},
        }

    # --- inspection -----------------------------------------------------------------------------------------

    def summary(self, *, full: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "call_id": self.id,
            "status": "active" if self.ended_at is None else "ended",
            "created_at": self.created_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
            "script": self.script.name,
            "session": self.session,
            "webrtc_filter": self.dc_filter is not None,
            "client_events": self.client_events,
            "server_event_types": [event["type"] for event in self.server_events],
        }
        if full:
            data["server_events"] = self.server_events
            data["items"] = list(self._items.values())
        return data
