"""`LiveSession`: the server's side of one server-mode call, for as long as the call lasts.

docs/architecture.md ("Who owns a call") and docs/protocol.md section 3 say what this does; in short:

* It owns the agent (a `VoiceAgent` over the call's sideband: tools answer there), the Recorder (fed from
  the sideband's raw-frame tap through `_record_raw`), the Broadcaster, the duration cap (counted from
  the session's `started_at`, so a resume does not reset it), the resume grace and the ownership lease
  (voice.lease).
* Browser sockets attach and detach (`attach`, `detach`); at most one is attached, a newer one replaces
  the older. With none attached, the call is hung up after VOICE_RESUME_GRACE_SECONDS (`abandoned`).
* Signalling: `ag2.offer` -> `POST /realtime/calls` (multipart, the server's credential for the
  session's provider, OpenAI or Azure OpenAI (voice.providers), the session with its server-side
  credentials) -> the call id is kept (never sent to the browser) -> the sideband opens -> `ag2.answer`.
  Any failure: `ag2.error` (stable code, a sentence a person can act on) and `ag2.close`,
  and nothing is left running at OpenAI.
* A process that stops releases its sessions instead of ending them (`release`); a browser that resumes
  elsewhere, or a serving process's sweep (`adopt_orphans`), takes the call over and re-opens the
  sideband, and the record goes on in the same `VoiceSession`.

HTTP to OpenAI runs on the event loop; ORM work only through `database_sync_to_async` (DESIGN.md rule 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import timedelta
from typing import Any, Protocol

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from voice import lease, live_audio, sessions
from voice.agent import Observer, VoiceAgent
from voice.broadcast import RESYNC_TYPE, Broadcaster
from voice.models import SessionEvent, VoiceConfig, VoiceSession
from voice.protocol import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_REPLACED,
    CLOSE_SERVICE_RESTART,
    CLOSE_TIMEOUT,
    CLOSE_TRY_AGAIN_LATER,
)
from voice.realtime import RawFrame, RealtimeError, SidebandGap, create_call, create_live_session, get_client
from voice.realtime.events import RealtimeEvent, ResponseDone
from voice.realtime.gptlive_events import LiveSessionClosed
from voice.realtime.throttle import ThrottledLog, TokenBucket
from voice.recording import Recorder, heartbeat_hooks, load_state
from voice.schemas import check_outgoing

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 2
FROM_BROWSER = SessionEvent.Direction.FROM_BROWSER
TO_BROWSER = SessionEvent.Direction.TO_BROWSER
INTERNAL = SessionEvent.Direction.INTERNAL

# How often a process waiting for a hand-off retries the lease.
HANDOFF_POLL_SECONDS = 0.2
# The sideband's reconnection policy (voice.realtime.sideband.ReconnectPolicy fields); None: its default.
SIDEBAND_RECONNECT: dict[str, float] | None = None

# Typed turns (ag2.text): each one costs a model response, and a person types a line every few seconds
# at most. Per session, so a resumed socket does not start with a fresh allowance.
TEXT_TURNS_PER_SECOND = 0.5
TEXT_TURN_BURST = 3
# A typed turn while the model is answering interrupts it: the new response is asked for once OpenAI
# confirms the cancellation (response.done), or after this long.
CANCEL_WAIT_SECONDS = 3.0

_registry: dict[str, LiveSession] = {}
# When daphne cancels consumers the process is going away: it must not adopt back the calls it just
# released. A cancellation is also how daphne ends one slow connection, so this lapses after a while.
STOPPING_LAPSE_SECONDS = 60.0
_stopping_at: float | None = None
_log = ThrottledLog(logger)


class BrowserSocket(Protocol):
    """What a LiveSession needs of an attached browser socket (the consumer)."""

    async def send_json(self, content: Any, close: bool = False) -> None: ...

    async def close(self, code: int | None = None, reason: str | None = None) -> None: ...


class Refused(Exception):
    """A resume that cannot go on: the `ag2.error` to send and the close code."""

    def __init__(self, code: str, message: str, close_code: int, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code, self.message, self.close_code, self.retryable = code, message, close_code, retryable

    def frame(self) -> dict[str, Any]:
        return {"type": "ag2.error", "code": self.code, "message": self.message, "retryable": self.retryable}


def _record_raw(recorder: Recorder, raw: RawFrame) -> None:
    """The sideband's raw-frame tap: each of OpenAI's frames logged once, where it was heard (origin
    `sideband`); what it means reaches the record as the typed event the agent dispatches."""
    recorder.tap(raw)


def get(session_id: str) -> LiveSession | None:
    return _registry.get(session_id)


def live_sessions() -> list[LiveSession]:
    return list(_registry.values())


def stopping() -> None:
    """The process is stopping (daphne cancels its consumers): adopt nothing for a while."""
    global _stopping_at
    _stopping_at = time.monotonic()


def _is_stopping() -> bool:
    return _stopping_at is not None and time.monotonic() - _stopping_at < STOPPING_LAPSE_SECONDS


class _Started(Observer):
    """Resolves when the agent has attached to the call (sideband open, session update sent)."""

    def __init__(self, started: asyncio.Future[None]) -> None:
        self.started = started

    async def start(self, agent: VoiceAgent) -> None:
        await super().start(agent)
        if not self.started.done():
            self.started.set_result(None)


class _ResponsesDone(Observer):
    """Tells the LiveSession each time a response ends (a typed turn waits for a cancelled one to)."""

    def __init__(self, done: asyncio.Event) -> None:
        self.done = done

    async def on_event(self, event: RealtimeEvent) -> None:
        if isinstance(event, ResponseDone):
            self.done.set()


class _LiveClosed(Observer):
    """GPT-Live said session.closed (with the final usage): ending the call may go on."""

    def __init__(self, closed: asyncio.Event) -> None:
        self.closed = closed

    async def on_event(self, event: RealtimeEvent) -> None:
        if isinstance(event, LiveSessionClosed):
            self.closed.set()


def _display_facts(payload: dict[str, Any]) -> dict[str, Any]:
    voice = payload.get("audio", {}).get("output", {}).get("voice")
    if isinstance(voice, dict):
        voice = "custom"
    return {"model": payload.get("model"), "voice": voice, "output_modalities": payload.get("output_modalities")}


class LiveSession:
    """One server-mode call: created when its session starts (or is taken over), gone when it ends or
    this process lets go of it. Use from the event loop only."""

    def __init__(self, session: VoiceSession) -> None:
        self.session = session
        self.session_id = str(session.pk)
        self.broadcaster = Broadcaster(self.session_id)
        self.broadcaster.on_watched = self._resync
        self.recorder = Recorder(self.session_id, model=session.model, broadcaster=self.broadcaster,
                                 batch_size=settings.VOICE_RECORDER_BATCH_SIZE,
                                 flush_seconds=settings.VOICE_RECORDER_FLUSH_SECONDS)
        self.recorder.survives_process = True
        self.llm_config = sessions.llm_config_for(session)
        if SIDEBAND_RECONNECT is not None:
            self.llm_config = {**self.llm_config, "reconnect": dict(SIDEBAND_RECONNECT)}
        self.client: Any = None
        self.agent: VoiceAgent | None = None
        self.agent_task: asyncio.Task[None] | None = None
        self.agent_error: BaseException | None = None
        self.cap_task: asyncio.Task[None] | None = None
        self.grace_task: asyncio.Task[None] | None = None
        self.browser: BrowserSocket | None = None
        self.ended = False
        self.released = False
        self.signalling = False
        self.client_failure: tuple[str, str] | None = None
        self._agent_started = False
        self._stopping_agent = False
        self.text_bucket = TokenBucket(TEXT_TURNS_PER_SECOND, TEXT_TURN_BURST)
        self._text_lock = asyncio.Lock()
        self._text_tasks: set[asyncio.Task[None]] = set()
        self._response_done = asyncio.Event()  # set by _ResponsesDone on each response.done
        self.live = sessions.is_live(session)  # GPT-Live, not the Realtime API
        self._live_closed = asyncio.Event()  # set by _LiveClosed on session.closed
        self.audio: live_audio.LiveAudioRecorder | None = None  # a GPT-Live call's server-side recording

    def __repr__(self) -> str:
        return f"<LiveSession {self.session_id} browser={'yes' if self.browser else 'no'}>"

    # --- starting --------------------------------------------------------------------------------------

    @classmethod
    async def start(cls, browser: BrowserSocket, session: VoiceSession) -> LiveSession:
        """A new session (its lease was taken when it was created): tell the browser `ag2.init`."""
        live = cls(session)
        live._register()
        live.broadcaster.to_staff({"type": "session.started", "session": session.to_dict()})
        live.browser = browser
        await live._send(live._init_frame(resumed=False))
        return live

    def _register(self) -> None:
        _registry[self.session_id] = self
        self.recorder.start()
        self._start_cap()

    def _init_frame(self, *, resumed: bool) -> dict[str, Any]:
        # Display facts only: no secret, no call id, not even the instructions.
        frame = {"type": "ag2.init", "protocol": PROTOCOL_VERSION, "mode": "server", "session_id": self.session_id,
                 "resumed": resumed, "session": _display_facts(self.session.session_payload)}
        if self.live:
            # What the page does differently for GPT-Live (docs/gpt-live.md, "The chat page"): how its
            # transcript fragments make lines, no typed turns, and the recording is made here.
            gap = (self.llm_config.get("gptlive") or {}).get("transcript_gap_ms")
            frame["api"] = "gpt-live"
            frame["live"] = {"transcript_gap_ms": gap if isinstance(gap, int) else 2000, "typing": False,
                             "recorded_by": "server"}
        return frame

    def _start_cap(self) -> None:
        self.cap_task = asyncio.create_task(self._enforce_cap(remaining_seconds(self.session)),
                                            name=f"cap-{self.session_id}")

    async def _enforce_cap(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.finish("max_duration", close_code=CLOSE_TIMEOUT)

    async def _resync(self) -> None:
        """A dashboard started watching: commit what it has not seen live, then have it re-read the record."""
        if not (self.ended or self.released):
            await self.recorder.flush()
            self.broadcaster.to_session({"type": RESYNC_TYPE})

    # --- the browser -------------------------------------------------------------------------------------

    async def _send(self, frame: dict[str, Any], *, record: bool = True) -> None:
        """To the attached browser, if any; signalling frames are part of the record."""
        check_outgoing("voice", frame)  # here too: a frame is recorded even with no browser attached
        if record:
            self.recorder.record(TO_BROWSER, frame)
        browser = self.browser
        if browser is not None:
            with contextlib.suppress(Exception):  # the socket may be gone; the record is kept
                await browser.send_json(frame)

    async def error(self, code: str, message: str, *, retryable: bool = False, record: bool = True) -> None:
        await self._send({"type": "ag2.error", "code": code, "message": message, "retryable": retryable},
                         record=record)

    async def attach(self, browser: BrowserSocket) -> None:
        """A browser resumed: it replaces any socket attached before, which is closed."""
        old, self.browser = self.browser, browser
        if self.grace_task is not None:
            self.grace_task.cancel()
            self.grace_task = None
        if old is not None and old is not browser:
            with contextlib.suppress(Exception):
                await old.close(code=CLOSE_REPLACED)
        self.recorder.record(INTERNAL, {"type": "ag2.browser_resumed"})
        await self._send(self._init_frame(resumed=True))

    async def detach(self, browser: BrowserSocket) -> None:
        """A browser socket closed. The call goes on without it, for the resume grace."""
        if browser is not self.browser:
            return  # replaced already
        self.browser = None
        if self.ended or self.released:
            return
        if not self.session.call_id and not self.signalling:
            # No call was ever created: there is nothing to come back to.
            await self.finish("disconnect", notify=False, close_code=None)
            return
        self.recorder.record(INTERNAL, {"type": "ag2.browser_detached"})
        self._start_grace()

    def _start_grace(self) -> None:
        if self.grace_task is None:
            self.grace_task = asyncio.create_task(self._grace(), name=f"grace-{self.session_id}")

    async def _grace(self) -> None:
        await asyncio.sleep(settings.VOICE_RESUME_GRACE_SECONDS)
        self.grace_task = None
        if self.browser is None:
            logger.info("Session %s: no browser came back within %.0fs; hanging up", self.session_id,
                        settings.VOICE_RESUME_GRACE_SECONDS)
            await self.finish("abandoned", notify=False, close_code=None)

    # --- signalling (frames the browser may send) --------------------------------------------------------

    async def offer(self, sdp: str) -> None:
        if self.session.call_id or self.signalling or self.ended:
            await self.error("unexpected_frame", "The call is already set up; the second offer was ignored.")
            return
        self.signalling = True
        try:
            await self._create_and_attach(sdp)
        finally:
            self.signalling = False

    async def _create_and_attach(self, sdp: str) -> None:
        try:
            provider = sessions.provider_for(self.session)
            if self.live:  # GPT-Live: a JSON body with the WebRTC transport (voice.realtime.gptlive)
                created = await create_live_session(provider.api_base, sdp, self.llm_config["session"],
                                                    auth=provider.auth(), timeout=settings.OPENAI_TIMEOUT_SECONDS,
                                                    service=provider.service)
            else:
                # Azure: ?webrtcfilter=on, so the browser's data channel carries only what the page shows.
                created = await create_call(provider.api_base, None, sdp, self.llm_config["session"],
                                            timeout=settings.OPENAI_TIMEOUT_SECONDS, auth=provider.auth(),
                                            params=provider.calls_params(server_mode=True), service=provider.service)
        except Exception as exc:
            await self._fail(exc, stage="create the call")
            return
        call_id = created.call_id
        self.session.call_id = call_id
        self.recorder.update_session(call_id=call_id)
        if self.ended or self.released:  # hung up (or the process stopped) while OpenAI answered
            if self.ended:
                await sessions.hang_up_call(self.session, call_id)
            return
        try:
            await self._attach_sideband(call_id)
        except Exception as exc:
            await self._fail(exc, stage="attach to the call")
            return
        await self._send({"type": "ag2.answer", "sdp": created.answer_sdp})

    async def ready(self) -> None:
        if not self.session.call_id:
            await self.error("unexpected_frame", "ag2.ready came before the call was set up; it was ignored.")
            return
        if self.session.status == VoiceSession.Status.CONNECTING:
            self.session.status = VoiceSession.Status.ACTIVE
            self.session.connected_at = timezone.now()
            self.recorder.update_session(status=VoiceSession.Status.ACTIVE, connected_at=self.session.connected_at)

    async def client_error(self, stage: str, message: str) -> None:
        logger.info("Session %s: browser reported %s error: %s", self.session_id, stage, message)
        self.client_failure = (stage, message)
        # Before the call is up a browser-side failure means there will be no call: end the session.
        if self.session.status == VoiceSession.Status.CONNECTING and not self.signalling:
            await self.finish(f"client_error:{stage}", status=VoiceSession.Status.FAILED, error=message,
                              notify=False)

    async def hangup(self) -> None:
        await self.finish("hangup")

    async def text(self, text: str) -> None:
        """A typed user turn (ag2.text, already validated): a user message and a request for an answer,
        sent over the sideband like every client event of this mode. The record gets the item from the
        sideband (conversation.item.added/done), as for a spoken turn; the browser sees it on its channel."""
        if self.ended or self.released:
            return
        if self.live:
            # GPT-Live takes no user turn as text: its only text inputs are instructions and commentary
            # for the model, and a Responses backend's own conversation (docs/gpt-live.md).
            await self.error("text_not_supported", "Your message was not sent: this assistant only listens, so "
                             "typed messages cannot be used in this call. Say it instead.")
            return
        if not self.session.call_id or self.signalling or not self._agent_started or self.client is None:
            await self.error("call_not_ready", "Your message was not sent: the call is not connected yet. Wait "
                             "until it says Connected, then send it again.", retryable=True)
            return
        if not self.text_bucket.take():
            _log.info("text_rate", "Session %s: typed turns over the rate refused", self.session_id)
            await self.error("text_rate_limited", "Your message was not sent: messages are coming faster than the "
                             "assistant can answer. Wait a moment, then send it again.", retryable=True)
            return
        # In the background, one at a time and in order: waiting for a cancellation must not hold up the
        # socket's other frames (a hang-up above all).
        task = asyncio.create_task(self._send_text(text), name=f"text-{self.session_id}")
        self._text_tasks.add(task)
        task.add_done_callback(self._text_tasks.discard)

    async def _send_text(self, text: str) -> None:
        async with self._text_lock:
            client = self.client
            if client is None or self.ended or self.released:
                return
            try:
                if client.response_in_progress:
                    await self._interrupt(client)
                await client.send_event({"type": "conversation.item.create", "item": {
                    "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
                await client.send_event({"type": "response.create"})
            except RealtimeError as exc:
                logger.warning("Session %s: typed turn not sent: [%s] %s", self.session_id, exc.code, exc)
                await self.error("text_not_sent", "Your message was not sent: the server has lost its connection "
                                 "to the voice service for the moment. Try again in a few seconds.", retryable=True)
            except Exception:  # a task of its own: nothing else would hear of it
                logger.exception("Session %s: typed turn failed", self.session_id)
                await self.error("text_not_sent", "Your message was not sent because of a problem on the server. "
                                 "Try again; if it keeps happening, tell an administrator.", retryable=True)

    async def _interrupt(self, client: Any) -> None:
        """Typing over the model is a barge-in: cancel its answer, stop the audio the browser still has to
        play (WebRTC), then wait for OpenAI to confirm, since a response asked for meanwhile is refused."""
        await client.send_event({"type": "response.cancel"})
        await client.send_event({"type": "output_audio_buffer.clear"})
        deadline = asyncio.get_running_loop().time() + CANCEL_WAIT_SECONDS
        while client.response_in_progress:
            self._response_done.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._response_done.wait()
            except TimeoutError:
                logger.info("Session %s: no response.done within %.0fs of a cancel; asking anyway",
                            self.session_id, CANCEL_WAIT_SECONDS)
                return

    # --- the sideband and the agent --------------------------------------------------------------------

    async def _attach_sideband(self, call_id: str) -> None:
        """Open the sideband with the agent on it; raise what prevented it (the agent is then gone)."""
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.client = get_client(self.llm_config, logger, call_id=call_id, on_frame=self._on_raw,
                                 on_gap=self._on_gap)
        observers: list[Observer] = [_Started(started), _ResponsesDone(self._response_done),
                                     _LiveClosed(self._live_closed)]
        if self.live and live_audio.records(self.session):
            # GPT-Live: the recording is made here from the sideband's audio copies; the page uploads none.
            self.audio = live_audio.LiveAudioRecorder(self.session)
            observers.append(self.audio)
        self.agent = sessions.agent_for(self.session, self.llm_config, self.client, self.recorder,
                                        observers=observers)
        self._agent_started = False
        self.agent_error = None
        self.agent_task = asyncio.create_task(self._run_agent(started), name=f"agent-{self.session_id}")
        await asyncio.wait({self.agent_task, started}, return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            self._agent_started = True
            return
        await asyncio.gather(self.agent_task, return_exceptions=True)
        raise self.agent_error or RuntimeError("the sideband closed before the agent started")

    def _on_raw(self, raw: RawFrame) -> None:
        _record_raw(self.recorder, raw)

    def _on_gap(self, gap: SidebandGap) -> None:
        # The record says when the server was not hearing the call; OpenAI does not replay what it missed.
        note = {"type": "ag2.sideband_gap", "started_at": gap.started_at, "ended_at": gap.ended_at,
                "seconds": gap.duration, "attempts": gap.attempts, "reason": gap.reason}
        self.recorder.record(INTERNAL, note)

    async def _run_agent(self, started: asyncio.Future[None]) -> None:
        assert self.agent is not None
        try:
            await self.agent.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.agent_error = exc
            if started.done():
                logger.warning("Session %s: agent stopped with %s", self.session_id, type(exc).__name__)
        if not started.done() or self._stopping_agent or self.ended or self.released:
            return
        # The stream ended by itself: the call ended at OpenAI, or the sideband could not be brought back.
        reason = getattr(self.client, "end_reason", None)
        if reason == "call_ended":
            if self.client_failure is not None:
                stage, message = self.client_failure
                await self.finish(f"client_error:{stage}", status=VoiceSession.Status.FAILED, error=message,
                                  hang_up=False)
            else:
                await self.finish("call_ended", hang_up=False)
            return
        failure = getattr(self.client, "failure", None) or self.agent_error
        detail = f"{failure} [{getattr(failure, 'code', type(failure).__name__)}]" if failure else str(reason)
        self.recorder.record(INTERNAL, {"type": "ag2.sideband_lost", "reason": str(reason), "detail": detail[:2000]})
        await self.error("sideband_lost", "The server lost its connection to the voice service and could not get "
                         "it back, so the call was ended. Start a new call.", retryable=True)
        await self.finish("sideband_lost", status=VoiceSession.Status.FAILED, error=detail[:2000])

    async def _stop_agent(self) -> None:
        """Stop the agent; its client closes the sideband. Never hangs up (another process may attach)."""
        self._stopping_agent = True
        agent, task = self.agent, self.agent_task
        if agent is not None and task is not asyncio.current_task():
            with contextlib.suppress(Exception):
                await agent.stop()
        if task is not None and task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.close()

    # --- ending, and letting go ---------------------------------------------------------------------------

    async def _fail(self, exc: BaseException, *, stage: str) -> None:
        """Signalling failed: say so in words a person can act on, end the session, leave nothing at OpenAI."""
        if isinstance(exc, RealtimeError):
            frame = exc.to_frame()
            detail = f"{exc} [{exc.code}{': ' + exc.detail if exc.detail else ''}]"
        else:
            logger.exception("Session %s: could not %s", self.session_id, stage, exc_info=exc)
            frame = {"type": "ag2.error", "code": "server_error", "retryable": True,
                     "message": "The call could not be set up because of a problem on the server. Try again; if it "
                                "keeps happening, tell an administrator."}
            detail = f"{type(exc).__name__}: {exc}"
        logger.warning("Session %s: could not %s: %s", self.session_id, stage, detail)
        self.recorder.record(INTERNAL, {"type": "ag2.upstream_error", "stage": stage, "code": frame["code"],
                                        "detail": detail[:2000]})
        await self._send(frame)
        await self.finish("upstream_error", status=VoiceSession.Status.FAILED, error=detail[:2000])

    def _cancel_timers(self) -> None:
        for text_task in list(self._text_tasks):
            if text_task is not asyncio.current_task():
                text_task.cancel()
        for task in (self.cap_task, self.grace_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self.cap_task = self.grace_task = None

    async def finish(self, reason: str, *, status: str = VoiceSession.Status.ENDED, error: str = "",
                     close_code: int | None = 1000, notify: bool = True, hang_up: bool = True) -> None:
        """End the call once, whatever ended it: hang up, close the sideband, end the session.

        The browser hears `ag2.close` first: hanging up closes its data channel, and the page should know
        why before that happens rather than take it for a failure."""
        if self.ended or self.released:
            return
        self.ended = True
        _registry.pop(self.session_id, None)
        self._cancel_timers()
        if notify:
            await self._send({"type": "ag2.close", "reason": reason})
        call_id = self.session.call_id
        if call_id and self.live:
            await self._close_live(hang_up=hang_up)
        if call_id and hang_up:
            await sessions.hang_up_call(self.session, call_id)
        await self._stop_agent()
        await self._close_audio()
        ended_at = timezone.now()
        self.recorder.update_session(status=status, ended_at=ended_at, end_reason=reason[:64], error=error)
        await self.recorder.close()
        session = self.session
        session.status, session.ended_at, session.end_reason = status, ended_at, reason[:64]
        session.turns, session.total_tokens = self.recorder.turns, self.recorder.total_tokens
        session.input_tokens, session.output_tokens = self.recorder.input_tokens, self.recorder.output_tokens
        session.cost_usd = self.recorder.cost_usd
        self.broadcaster.to_staff({"type": "session.ended", "session": session.to_dict()})
        await self.broadcaster.close()
        browser, self.browser = self.browser, None
        if browser is not None and close_code is not None:
            with contextlib.suppress(Exception):
                await browser.close(code=close_code)

    async def _close_audio(self) -> None:
        """The server-side recording complete (its last seconds and final header written); a failure is
        logged there and never stops the call from ending."""
        if self.audio is not None:
            with contextlib.suppress(Exception):
                await self.audio.close()

    async def _close_live(self, *, hang_up: bool) -> None:
        """GPT-Live: ask for session.close and wait (bounded) for session.closed, which carries the final
        usage; then settle the creation charge (billed only if the session never started)."""
        client = self.client
        if hang_up and client is not None and getattr(client, "connected", False) and not self._live_closed.is_set():
            try:
                await client.close_session()
                async with asyncio.timeout(settings.VOICE_LIVE_CLOSE_WAIT_SECONDS):
                    await self._live_closed.wait()
            except TimeoutError:
                logger.info("Session %s: no session.closed within %.1fs; the last usage update stands",
                            self.session_id, settings.VOICE_LIVE_CLOSE_WAIT_SECONDS)
            except Exception as exc:
                logger.info("Session %s: could not ask GPT-Live to close (%s)", self.session_id, type(exc).__name__)
        self.recorder.settle_live_creation(settings.VOICE_LIVE_CREATION_CHARGE_SECONDS)

    async def release(self, *, reason: str, stopping: bool = False) -> None:
        """Let go of the call without ending it: close the sideband (no hang-up), write the record (spool
        it if the process is stopping and the database cannot take it), release the lease, and close the
        browser's socket so that its page resumes where the call is served next."""
        if self.ended or self.released:
            return
        self.released = True
        _registry.pop(self.session_id, None)
        self._cancel_timers()
        await self._stop_agent()
        await self._close_audio()
        self.recorder.record(INTERNAL, {"type": "ag2.sideband_released", "reason": reason})
        await self.recorder.close(stopping=stopping)
        try:
            await database_sync_to_async(lease.release)(self.session_id)
        except Exception as exc:  # the database is away: the lease goes stale and is taken after the grace
            logger.warning("Session %s: could not release its lease (%r); it lapses after the grace",
                           self.session_id, exc)
        await self.broadcaster.close()
        browser, self.browser = self.browser, None
        if browser is not None:
            with contextlib.suppress(Exception):
                await browser.close(code=CLOSE_SERVICE_RESTART if stopping else CLOSE_REPLACED)
        logger.info("Session %s: released (%s); the call goes on", self.session_id, reason)


# --- taking a call over ------------------------------------------------------------------------------------


@database_sync_to_async
def _load(session_id: str) -> VoiceSession | None:
    return VoiceSession.objects.select_related("user", "config").filter(pk=session_id).first()


async def _take_lease(session_id: str, wait_seconds: float) -> bool:
    """The lease, at once if free or stale; else after asking its holder for a hand-off (bounded wait)."""
    grace = settings.VOICE_HEARTBEAT_GRACE_SECONDS
    deadline = asyncio.get_running_loop().time() + wait_seconds
    asked = False
    while True:
        if await database_sync_to_async(lease.acquire)(session_id, grace):
            return True
        if asyncio.get_running_loop().time() >= deadline:
            return False
        if not asked:
            asked = await database_sync_to_async(lease.request_handoff)(session_id)
        await asyncio.sleep(HANDOFF_POLL_SECONDS)


async def _take_over(session: VoiceSession, browser: BrowserSocket | None, *, how: str) -> LiveSession:
    """This process now holds the lease of a live call another process served: go on with it here."""
    live = LiveSession(session)
    live.recorder.restore(await database_sync_to_async(load_state)(live.session_id))
    live._register()
    live.browser = browser
    live.recorder.record(INTERNAL, {"type": "ag2.taken_over", "by": how})
    try:
        await live._attach_sideband(session.call_id)
    except Exception as exc:
        status = getattr(exc, "status_code", None)
        if status in (404, 410):  # the call is over at OpenAI: end the session quietly
            live.recorder.record(INTERNAL, {"type": "ag2.call_gone", "detail": str(exc)[:500]})
            await live.finish("call_ended", hang_up=False, close_code=None, notify=False)
            raise Refused("call_ended", "This call has ended. Start a new one.", CLOSE_NOT_FOUND) from None
        await live._fail(exc, stage="re-attach to the call")
        raise Refused("resume_failed", "The call could not be resumed; start a new one.", CLOSE_NOT_FOUND,
                      retryable=True) from None
    if browser is None:
        live._start_grace()
    else:
        await live._send(live._init_frame(resumed=True))
    logger.info("Session %s: call taken over (%s)", live.session_id, how)
    return live


async def resume(browser: BrowserSocket, user: Any, raw_session_id: str | None) -> LiveSession:
    """`/ws/voice/?resume=<id>`: re-attach here, or take the call over from the process that held it."""
    try:
        session_id = str(uuid.UUID(str(raw_session_id)))
    except ValueError:
        raise Refused("not_found", "There is no such call to resume. Start a new one.", CLOSE_NOT_FOUND) from None
    local = _registry.get(session_id)
    if local is not None and local.session.user_id == user.pk and not (local.ended or local.released):
        await local.attach(browser)
        return local
    session = await _load(session_id)
    if session is None or session.user_id != user.pk:
        raise Refused("not_found", "There is no such call to resume. Start a new one.", CLOSE_NOT_FOUND)
    if session.mode != VoiceConfig.CallMode.SERVER:
        raise Refused("not_resumable", "This call cannot be resumed; start a new one.", CLOSE_FORBIDDEN)
    if not session.is_live or not session.call_id:
        raise Refused("call_ended", "This call has ended. Start a new one.", CLOSE_NOT_FOUND)
    wait = settings.VOICE_HEARTBEAT_SECONDS * 2 + 2
    if not await _take_lease(session_id, wait):
        raise Refused("call_busy", "The call is still held by another server; trying again in a moment.",
                      CLOSE_TRY_AGAIN_LATER, retryable=True)
    local = _registry.get(session_id)  # adopted here meanwhile (this process's own sweep)
    if local is not None and not (local.ended or local.released):
        await local.attach(browser)
        return local
    session = await _load(session_id)
    if session is None or not session.is_live:
        raise Refused("call_ended", "This call has ended. Start a new one.", CLOSE_NOT_FOUND)
    return await _take_over(session, browser, how="resume")


# --- the heartbeat: hand-offs and orphans ---------------------------------------------------------------------


@database_sync_to_async
def _claim_orphans() -> list[str]:
    grace = settings.VOICE_HEARTBEAT_GRACE_SECONDS
    return [sid for sid in lease.orphans(grace) if sid not in _registry and lease.acquire(sid, grace)]


async def adopt_orphans() -> list[str]:
    """Take over server-mode calls nobody serves (released by a stopping process, or whose process died):
    the sideband is re-opened and the resume grace decides their end. Returns the sessions adopted."""
    if _is_stopping():
        return []
    adopted = []
    for session_id in await _claim_orphans():
        session = await _load(session_id)
        if session is None or not session.is_live or session_id in _registry:
            continue
        try:
            await _take_over(session, None, how="adoption")
        except Refused:
            continue
        except Exception:
            logger.exception("Session %s: adoption failed", session_id)
            continue
        adopted.append(session_id)
    if adopted:
        logger.warning("Adopted %d orphaned server-mode call(s): %s", len(adopted), ", ".join(adopted))
    return adopted


async def _after_heartbeat(give_up: list[str]) -> None:
    for session_id in give_up:
        live = _registry.get(session_id)
        if live is not None:
            await live.release(reason="handoff")
    await adopt_orphans()


heartbeat_hooks.append(_after_heartbeat)


def remaining_seconds(session: VoiceSession) -> float:
    """What is left of the session's duration cap (counted from its start, whoever serves it)."""
    end = session.started_at + timedelta(seconds=session.max_duration_seconds)
    return max(0.0, (end - timezone.now()).total_seconds())
