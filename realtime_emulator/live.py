"""One emulated GPT-Live WebRTC session (``POST /v1/live/sessions``), after ``shared/reference/gpt-live.md``.

What it does, as the reference describes GPT-Live (marks: [INFERRED] where the reference knows no rule,
and the rule chosen here is configurable or documented in docs/gpt-live.md):

* The HTTP request starts the session; ``session.started`` goes to the data channel and every sideband once
  the peer connects, and is replayed to each sideband that attaches afterwards.
* The timeline is the session's audio: ``_timeline_ms`` advances with the microphone's frames.
* A user turn is microphone energy (the script's VAD, as in the Realtime emulator); its words come as
  ``session.input_transcript.delta`` fragments with ``start_ms``/``end_ms``, no done event.
* The reply: ``session.output_transcript.delta`` fragments (timed), the tone on the audio track while it
  "speaks". A turn with a ``tool_call`` delegates first: under client delegation
  ``session.delegation.created`` (target ``client``), then it waits for ``session.commentary.append``
  with that id (acknowledged with ``session.commentary.appended``) and speaks the reply quoting it; under
  Responses delegation the nested ``response.event`` stream (``response.created``, the function call in
  ``response.output_item.done``, ``response.completed`` with ``output: []``), then it waits for the
  ``function_call_output`` and ``response.create`` and streams the backend's text before speaking.
* Sidebands also get the audio copies: ``session.input_audio.append {audio}`` and
  ``session.output_audio.delta {delta, start_ms, end_ms}``, PCM16 mono 24 kHz, every 100 ms.
* ``session.usage.updated`` every ``usage_interval`` seconds (Azure: about once a minute) with the
  cumulative seconds; ``session.closed {reason, session, usage}`` at the end, then sidebands close (1000).
* Client events are checked against the reference's shapes; a refusal is an ``error`` event.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import math
import time
from collections.abc import Coroutine
from typing import Any

import av
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from pydantic import ValidationError

from voice.realtime.gptlive_schema import validate_live_client_event

from .peer import DATA_CHANNEL_LABEL, MIC_SILENCE_POLL_S, ToneTrack, _pieces, _text_tokens, _words, frame_rms
from .script import Script, Turn
from .validation import new_id

logger = logging.getLogger("realtime_emulator.live")

COPY_RATE = 24_000  # the sideband's audio copies: PCM16 mono 24 kHz, whatever the call's codec
COPY_MS = 100
DEFAULT_USAGE_INTERVAL_S = 60.0
# How long a delegation waits for its answer before the emulated model says it could not get one. The
# reference knows no deadline (its unknown 4): [INFERRED], configurable per emulator.
DEFAULT_DELEGATION_WAIT_S = 30.0
SIDEBAND_ONLY = frozenset({"session.input_audio.append", "session.output_audio.delta"})


class LiveError(Exception):
    def __init__(self, message: str, *, code: str | None, param: str | None = None,
                 type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.message, self.code, self.param, self.type = message, code, param, type_


def _tone_pcm24(ms: int, playing: bool) -> bytes:
    samples = COPY_RATE * ms // 1000
    if not playing:
        return bytes(samples * 2)
    from .peer import sine_frame_bytes

    return sine_frame_bytes(samples, 500.0, 0.3, COPY_RATE)


class LiveCall:
    """A GPT-Live session over WebRTC with the emulated model (module docstring)."""

    kind = "live"

    def __init__(self, session_id: str, session: dict[str, Any], script: Script, *, max_call_seconds: float = 3600.0,
                 connect_timeout: float = 20.0, usage_interval: float = DEFAULT_USAGE_INTERVAL_S,
                 delegation_wait: float = DEFAULT_DELEGATION_WAIT_S, audio_copies: bool = True) -> None:
        self.id = session_id
        self.config = session
        self.script = script
        self.created_at = time.time()
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.max_call_seconds = max_call_seconds
        self.connect_timeout = connect_timeout
        self.usage_interval = usage_interval
        self.delegation_wait = delegation_wait
        self.audio_copies = audio_copies
        self.client_events: list[dict[str, Any]] = []
        self.server_events: list[dict[str, Any]] = []
        delegation = session.get("delegation") or {"type": "client"}
        self.session = {
            "id": session_id, "model": session["model"], "status": "active",
            "expires_at": int(self.created_at + max_call_seconds),
            "instructions": session.get("instructions") or "", "input": session.get("input") or [],
            "audio": {"output": {"voice": (session.get("audio") or {}).get("output", {}).get("voice", "marin")}},
            "delegation": delegation, "store": bool(session.get("store", False)),
        }
        if "client" in session:
            self.session["client"] = session["client"]
        permissions = ((session.get("client") or {}).get("data_channel") or {})
        allowed_server = permissions.get("allowed_server_events", "all")
        self.dc_server_events = None if allowed_server in (None, "all") else {e.get("type") for e in allowed_server}
        allowed_client = permissions.get("allowed_client_events", "all")
        self.dc_client_events = None if allowed_client in (None, "all") else set(allowed_client)
        self._pc: RTCPeerConnection | None = None
        self._dc: RTCDataChannel | None = None
        self._tone = ToneTrack()
        self._sidebands: list[asyncio.Queue[dict[str, Any] | None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connected = asyncio.Event()
        self.started_at: float | None = None  # monotonic, when session.started was sent
        self._timeline_ms = 0.0
        self._turn_index = 0
        self._speaking_until_ms = 0.0
        self._heard_until_ms = 0.0  # the end of the last user speech on the timeline
        self._busy = False
        self._loud_ms = 0.0
        self._quiet_ms = 0.0
        self._speech_start: float | None = None
        self._cooldown_until = 0.0
        self._mic_pcm = bytearray()
        self._client_delegations: dict[str, asyncio.Future[str]] = {}
        self._function_outputs: dict[str, str] = {}
        self._awaiting_calls: set[str] = set()
        self._continue = asyncio.Event()

    # --- lifecycle ---

    @property
    def active(self) -> bool:
        return self.ended_at is None

    @property
    def delegation_type(self) -> str:
        return str(self.session["delegation"].get("type", "client"))

    async def accept(self, offer_sdp: str) -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._pc = pc

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if channel.label != DATA_CHANNEL_LABEL:
                return
            self._dc = channel

            @channel.on("message")
            def on_message(message: str | bytes) -> None:
                self.handle_client_message(message, source="datachannel")

            @channel.on("close")
            def on_close() -> None:
                self._spawn(self.close("remote_hangup"))

            if self.started_at is not None:
                self._send_dc(self._started_event())

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._spawn(self._read_microphone(track))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected":
                self._connected.set()
                self._start()
            elif pc.connectionState in ("failed", "closed"):
                await self.close("connection_lost")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            if any(t.kind == "audio" for t in pc.getTransceivers()):
                pc.addTrack(self._tone)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await pc.close()
            self.ended_at, self.end_reason = time.time(), "invalid_offer"
            raise LiveError(f"Invalid SDP offer: {exc}", code="invalid_offer", param="transport.sdp") from exc
        self._spawn(self._await_connection())
        self._spawn(self._expire())
        return pc.localDescription.sdp

    def _start(self) -> None:
        if self.started_at is not None or self.ended_at is not None:
            return
        self.started_at = time.monotonic()
        event = self._started_event()
        self.server_events.append(event)
        self._send_dc(event)
        for queue in self._sidebands:
            queue.put_nowait(event)
        self._spawn(self._report_usage())
        if self.audio_copies:
            self._spawn(self._copy_output())

    def _started_event(self) -> dict[str, Any]:
        return {"type": "session.started", "event_id": new_id("event", 10), "session": copy.deepcopy(self.session)}

    def elapsed_seconds(self) -> float:
        return 0.0 if self.started_at is None else round(time.monotonic() - self.started_at, 1)

    async def close(self, reason: str) -> None:
        if self.ended_at is not None:
            return
        if self.started_at is not None:
            self._emit("session.closed", reason=reason, session=copy.deepcopy(self.session),
                       usage={"seconds": self.elapsed_seconds()})
        self.ended_at, self.end_reason = time.time(), reason
        logger.info("live session %s ended: %s", self.id, reason)
        self._tone.playing = False
        for future in self._client_delegations.values():
            if not future.done():
                future.cancel()
        for queue in self._sidebands:
            queue.put_nowait(None)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        await asyncio.sleep(0.05)  # let the data channel carry session.closed before it goes
        if self._dc is not None:
            self._dc.close()
        self._tone.stop()
        if self._pc is not None:
            await self._pc.close()

    async def _await_connection(self) -> None:
        try:
            await asyncio.wait_for(self._connected.wait(), self.connect_timeout)
        except TimeoutError:
            await self.close("connection_lost")

    async def _expire(self) -> None:
        await asyncio.sleep(self.max_call_seconds)
        await self.close("expired")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("live session %s: task failed", self.id, exc_info=task.exception())

    # --- event plumbing ---

    def attach_sideband(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        if self.ended_at is not None:
            queue.put_nowait(None)
        elif self.started_at is not None:
            # "Live replays session.started to every connection that attaches."
            queue.put_nowait(self._started_event())
        self._sidebands.append(queue)
        return queue

    def detach_sideband(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        with contextlib.suppress(ValueError):
            self._sidebands.remove(queue)

    @property
    def sideband_count(self) -> int:
        return len(self._sidebands)

    def _emit(self, type_: str, *, sidebands_only: bool = False, **fields: Any) -> dict[str, Any]:
        event: dict[str, Any] = {"type": type_}
        if type_ not in SIDEBAND_ONLY:  # reflected audio carries no event_id
            event["event_id"] = new_id("event", 10)
        event.update(fields)
        if type_ not in SIDEBAND_ONLY:
            self.server_events.append(event)
        if not sidebands_only and type_ not in SIDEBAND_ONLY:
            self._send_dc(event)  # filtered there by the data channel's permissions
        for queue in self._sidebands:
            queue.put_nowait(event)
        return event

    def _send_dc(self, event: dict[str, Any]) -> None:
        if self._dc is None or self._dc.readyState != "open":
            return
        if self.dc_server_events is not None and event["type"] not in self.dc_server_events:
            return
        with contextlib.suppress(Exception):
            self._dc.send(json.dumps(event))

    def _error(self, err: LiveError, client_event_id: str | None) -> None:
        error: dict[str, Any] = {"type": err.type, "code": err.code, "message": err.message, "param": err.param}
        if client_event_id:
            error["client_event_id"] = client_event_id
        self._emit("error", error=error)

    def _at(self) -> int:
        return int(self._timeline_ms)

    # --- client events ---

    def handle_client_message(self, message: str | bytes | dict[str, Any], source: str) -> None:
        if self.ended_at is not None:
            return
        if isinstance(message, dict):
            event: Any = message
        else:
            text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
            try:
                event = json.loads(text)
            except ValueError:
                self._error(LiveError("We could not parse the JSON body of your event.", code="invalid_json"), None)
                return
        self.client_events.append({"source": source, "received_at": time.time(), "event": event})
        client_event_id = event.get("event_id") if isinstance(event, dict) and isinstance(
            event.get("event_id"), str) else None
        try:
            self._handle(event, source, client_event_id)
        except LiveError as err:
            self._error(err, client_event_id)

    def _handle(self, event: Any, source: str, client_event_id: str | None) -> None:
        kind = event.get("type") if isinstance(event, dict) else None
        if kind in ("session.start", "session.input_audio.append"):
            # [INFERRED] code: the reference says these are not accepted on WebRTC or the sideband.
            raise LiveError(f"'{kind}' is not accepted on this connection: the HTTP request started the session "
                            "and audio travels on the media tracks.", code="invalid_event", param="type")
        if source == "datachannel" and self.dc_client_events is not None and kind not in self.dc_client_events:
            # [INFERRED] code: the frontend's data channel may send only the allowed client events.
            raise LiveError(f"The frontend data channel may not send '{kind}'.", code="event_not_allowed",
                            param="type")
        try:
            validate_live_client_event(event)
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first["loc"][1:]) or "type"
            code = "unknown_parameter" if first["type"] == "extra_forbidden" else "invalid_value"
            raise LiveError(f"Invalid '{kind}' event: {param}: {first['msg']}.", code=code, param=param) from None
        if kind == "session.close":
            self._spawn(self.close("close_requested"))
        elif kind in ("session.input_audio.mute", "session.input_audio.unmute"):
            self._emit(kind + "d", **_echo(client_event_id))
        elif kind == "session.update":
            self._on_update(event, client_event_id)
        elif isinstance(kind, str) and kind.endswith(".append"):  # a str: the event was validated above
            self._on_append(event, client_event_id)
        elif kind == "response.item.create":
            self._require_responses(kind)
            item = event["item"]
            if item.get("type") == "function_call_output" and isinstance(item.get("call_id"), str):
                self._function_outputs[item["call_id"]] = str(item.get("output", ""))
        elif kind == "response.create":
            self._require_responses(kind)
            self._continue.set()

    def _require_responses(self, kind: str) -> None:
        if self.delegation_type != "responses":
            # [INFERRED] code: "reject response.* commands under client delegation" (the reference, 8.6).
            raise LiveError(f"'{kind}' needs Responses delegation; this session delegates to the client.",
                            code="invalid_request", param="type")

    def _on_update(self, event: dict[str, Any], client_event_id: str | None) -> None:
        update = event["session"]
        unknown = set(update) - {"delegation"}
        if unknown:
            name = sorted(unknown)[0]
            raise LiveError(f"The session's '{name}' cannot change after startup.", code="immutable_field_update",
                            param=f"session.{name}")
        delegation = update.get("delegation")
        if not isinstance(delegation, dict) or delegation.get("type", self.delegation_type) != self.delegation_type:
            raise LiveError("The delegation type cannot change after session startup.",
                            code="immutable_field_update", param="session.delegation.type")
        if self.delegation_type == "responses":
            self.session["delegation"]["responses"].update(delegation.get("responses") or {})
        self._emit("session.updated", session=copy.deepcopy(self.session), **_echo(client_event_id))

    def _on_append(self, event: dict[str, Any], client_event_id: str | None) -> None:
        delegation_id = event["delegation_id"]
        if delegation_id is not None:
            if self.delegation_type == "responses":
                raise LiveError("Non-null delegation ids are not accepted with Responses delegation.",
                                code="invalid_value", param="delegation_id")
            if delegation_id not in self._client_delegations:
                raise LiveError(f"Unknown client delegation '{delegation_id}'.", code="invalid_value",
                                param="delegation_id")
        start = self._at()
        end = start + 60 * _text_tokens(event["content"])  # [INFERRED] the context's estimated length
        self._emit(event["type"] + "ed", start_ms=start, end_ms=end, **_echo(client_event_id))
        future = self._client_delegations.get(delegation_id or "")
        if future is not None and not future.done() and event["type"] == "session.commentary.append":
            future.set_result(event["content"])

    # --- microphone, timeline and turns ---

    async def _read_microphone(self, track: MediaStreamTrack) -> None:
        to_copy = av.AudioResampler(format="s16", layout="mono", rate=COPY_RATE)
        while self.ended_at is None:
            try:
                frame = await asyncio.wait_for(track.recv(), MIC_SILENCE_POLL_S)
            except TimeoutError:
                self._on_mic(MIC_SILENCE_POLL_S * 1000, 0.0, bytes(COPY_RATE * 2 // 10))
                continue
            except MediaStreamError:
                return
            if not isinstance(frame, av.AudioFrame):  # an audio track yields audio frames; be sure of it
                continue
            rms = frame_rms(frame) if frame.format.name == "s16" else 0.0
            pcm = b"".join(bytes(f.planes[0])[: f.samples * 2] for f in to_copy.resample(frame))
            if frame.format.name != "s16":
                rms = _rms(pcm)
            self._on_mic(frame.samples * 1000 / (frame.sample_rate or 48_000), rms, pcm)

    def _on_mic(self, duration_ms: float, rms: float, pcm24: bytes) -> None:
        self._timeline_ms += duration_ms
        if self.audio_copies and self.started_at is not None:
            self._mic_pcm += pcm24
            chunk = COPY_RATE * 2 * COPY_MS // 1000
            while len(self._mic_pcm) >= chunk:
                audio, self._mic_pcm = bytes(self._mic_pcm[:chunk]), self._mic_pcm[chunk:]
                self._emit("session.input_audio.append", audio=base64.b64encode(audio).decode())
        if self._busy or time.monotonic() < self._cooldown_until or self._turn_index >= len(self.script.turns):
            self._loud_ms = 0.0
            return
        vad = self.script.vad
        loud = rms >= vad.threshold
        if self._speech_start is None:
            self._loud_ms = self._loud_ms + duration_ms if loud else 0.0
            if loud and self._loud_ms >= vad.min_speech_ms:
                self._speech_start = self._timeline_ms - self._loud_ms
                self._quiet_ms = 0.0
            return
        self._quiet_ms = 0.0 if loud else self._quiet_ms + duration_ms
        if self._quiet_ms >= (vad.silence_ms or 500) or self._timeline_ms - self._speech_start >= vad.max_utterance_ms:
            start, end = self._speech_start, self._timeline_ms - (self._quiet_ms if not loud else 0)
            self._speech_start = None
            self._loud_ms = 0.0
            turn = self.script.turns[self._turn_index]
            self._turn_index += 1
            self._busy = True
            self._spawn(self._run_turn(turn, int(start), int(end)))

    def trigger_turn(self, text: str | None = None) -> str:
        """A user turn without microphone energy (the control endpoint): its words, then the reply."""
        if self.ended_at is not None:
            raise RuntimeError("the session has ended")
        if self._busy:
            raise RuntimeError("a turn is in progress")
        if self._turn_index < len(self.script.turns):
            turn = self.script.turns[self._turn_index]
            self._turn_index += 1
        else:
            turn = Turn(user=text or "Hello?", assistant=self.script.fallback_reply)
        if text:
            turn = turn.model_copy(update={"user": text})
        self._busy = True
        start = max(self._at(), int(self._heard_until_ms), int(self._speaking_until_ms))
        self._spawn(self._run_turn(turn, start, start + self.script.timing_for(turn).synthetic_speech_ms))
        return f"turn_{self._turn_index}"

    def busy(self) -> bool:
        return self._busy

    def switch_script(self, script: Script) -> None:
        self.script, self._turn_index = script, 0

    async def _run_turn(self, turn: Turn, start_ms: int, end_ms: int) -> None:
        try:
            timing = self.script.timing_for(turn)
            self._heard_until_ms = max(self._heard_until_ms, end_ms)
            words = _words(turn.user)
            step = max(1, (end_ms - start_ms) // max(1, len(words)))
            for index, word in enumerate(words):
                # The first fragment of a segment has no leading space (the reference's fragment quirks).
                self._emit("session.input_transcript.delta", delta=word.lstrip() if index == 0 else word,
                           start_ms=start_ms + index * step, end_ms=start_ms + (index + 1) * step)
                await asyncio.sleep(timing.delta_ms / 1000)
            await asyncio.sleep(timing.response_ms / 1000)
            reply = turn.assistant
            if turn.tool_call is not None and self._offers(turn.tool_call.name):
                reply = await self._delegate(turn)
            await self._speak(reply, timing.delta_ms, timing.audio_ms_per_word)
        finally:
            self._busy = False
            self._cooldown_until = time.monotonic() + self.script.vad.cooldown_ms / 1000

    def _offers(self, name: str) -> bool:
        if self.delegation_type != "responses":
            return True  # the client decides what a delegation does
        tools = self.session["delegation"].get("responses", {}).get("tools") or []
        return any(t.get("type") == "function" and t.get("name") == name for t in tools)

    async def _delegate(self, turn: Turn) -> str:
        spec = turn.tool_call
        assert spec is not None
        delegation_id = new_id("item", 10)
        if self.delegation_type != "responses":
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._client_delegations[delegation_id] = future
            self._emit("session.delegation.created", offset_ms=self._at(),
                       delegation={"id": delegation_id, "type": "delegation", "target": "client"})
            try:
                content = await asyncio.wait_for(future, self.delegation_wait)
            except TimeoutError:
                return turn.assistant
            return spec.reply_with(content)
        return await self._responses_delegation(turn, delegation_id)

    async def _responses_delegation(self, turn: Turn, delegation_id: str) -> str:
        spec = turn.tool_call
        assert spec is not None
        backend = self.session["delegation"]["responses"]
        model = backend.get("model") or "gpt-5.5"
        first = new_id("resp")
        self._emit("session.delegation.created", offset_ms=self._at(),
                   delegation={"id": delegation_id, "type": "delegation", "target": "responses",
                               "response_id": first})
        call_id = new_id("call")
        arguments = json.dumps(spec.arguments)
        self._nested(delegation_id, "response.created", response=self._response(first, model, "in_progress"))
        item = {"type": "function_call", "id": new_id("fc"), "call_id": call_id, "name": spec.name,
                "arguments": arguments, "status": "completed"}
        self._nested(delegation_id, "response.output_item.done", output_index=0, item=item)
        self._nested(delegation_id, "response.completed", response=self._response(
            first, model, "completed", usage=_usage(turn.user, arguments)))
        self._continue.clear()
        deadline = time.monotonic() + self.delegation_wait
        while call_id not in self._function_outputs or not self._continue.is_set():
            if time.monotonic() > deadline:
                return turn.assistant
            await asyncio.sleep(0.02)
        output = self._function_outputs.pop(call_id)
        reply = spec.reply_with(output)
        second = new_id("resp")
        self._nested(delegation_id, "response.created", response=self._response(second, model, "in_progress"))
        for piece in _pieces(reply, 3):
            self._nested(delegation_id, "response.output_text.delta", item_id=new_id("msg"), output_index=0,
                         content_index=0, delta=piece, logprobs=[])
        self._nested(delegation_id, "response.completed", response=self._response(
            second, model, "completed", usage=_usage(output, reply)))
        return reply

    def _response(self, response_id: str, model: str, status: str, usage: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
        # Lifecycle snapshots carry output [], tools [], instructions null and no input (the reference, 3.3).
        return {"id": response_id, "object": "response", "status": status, "model": model, "output": [],
                "tools": [], "instructions": None, "usage": usage}

    def _nested(self, delegation_id: str, kind: str, **fields: Any) -> None:
        self._emit("response.event", delegation_id=delegation_id, event={"type": kind, **fields})

    async def _speak(self, text: str, delta_ms: int, ms_per_word: int) -> None:
        words = _words(text)
        start = max(self._at(), int(self._speaking_until_ms), int(self._heard_until_ms) + 200)
        self._speaking_until_ms = start + len(words) * ms_per_word
        self._tone.playing = True
        try:
            for index, word in enumerate(words):
                self._emit("session.output_transcript.delta", delta=word.lstrip() if index == 0 else word,
                           start_ms=start + index * ms_per_word, end_ms=start + (index + 1) * ms_per_word)
                await asyncio.sleep(max(delta_ms, ms_per_word) / 1000)
        finally:
            self._tone.playing = False

    # --- periodic ---

    async def _report_usage(self) -> None:
        while self.ended_at is None:
            await asyncio.sleep(self.usage_interval)
            if self.ended_at is None:
                self._emit("session.usage.updated", usage={"seconds": self.elapsed_seconds()},
                           context_window={"usage_ratio": round(min(1.0, self._timeline_ms / 3_600_000), 4)})

    async def _copy_output(self) -> None:
        """The sideband's copy of the output audio, 100 ms at a time on the session's timeline."""
        started = time.monotonic()
        sent = 0
        while self.ended_at is None:
            target = int((time.monotonic() - started) * 1000 // COPY_MS)
            while sent < target:
                audio = _tone_pcm24(COPY_MS, self._tone.playing)
                self._emit("session.output_audio.delta", delta=base64.b64encode(audio).decode(),
                           start_ms=sent * COPY_MS, end_ms=(sent + 1) * COPY_MS)
                sent += 1
            await asyncio.sleep(COPY_MS / 1000)

    def summary(self, *, full: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "call_id": self.id, "kind": self.kind, "status": "active" if self.ended_at is None else "ended",
            "created_at": self.created_at, "ended_at": self.ended_at, "end_reason": self.end_reason,
            "script": self.script.name, "session": self.session, "client_events": self.client_events,
            "server_event_types": [event["type"] for event in self.server_events],
        }
        if full:
            data["server_events"] = self.server_events
        return data


def _echo(client_event_id: str | None) -> dict[str, Any]:
    return {"client_event_id": client_event_id} if client_event_id else {}


def _usage(prompt: str, output: str) -> dict[str, Any]:
    inp, out = 200 + _text_tokens(prompt), _text_tokens(output) + 5
    return {"input_tokens": inp, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": inp + out}


def _rms(pcm: bytes) -> float:
    from array import array

    samples = array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples) / len(samples)) / 32768.0


__all__ = ["LiveCall", "LiveError"]
