"""What a realtime client is (``RealtimeClientProtocol``), the event queue every client shares
(``RealtimeClientBase``), the client events every client sends (``ClientEventsMixin``), and the registry
that picks a client for an llm_config (``get_client``).

The queue is bounded: when observers fall behind, ``add_event`` waits, so the reader stops pulling frames
off the websocket instead of buffering without limit. The end of the stream is a ``None`` that bypasses
the bound (it must get through even when the queue is full, or a reader could wait forever).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

from voice.realtime.events import InputAudioBufferDelta, RealtimeEvent, ResponseCreated, ResponseDone

DEFAULT_EVENT_QUEUE_SIZE = 1000
Role = Literal["user", "assistant", "system"]
FrameDirection = Literal["from_openai", "to_openai"]
FrameOrigin = Literal["sideband", "browser"]


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One text frame exactly as it crossed the wire, for logging once at the source (DESIGN.md rule 8).

    ``at`` is wall-clock time (``time.time()``) when the frame was read, or written to the socket.
    """

    direction: FrameDirection
    origin: FrameOrigin
    text: str
    call_id: str | None = None
    at: float = field(default_factory=time.time)


# Called synchronously for every frame, in wire order; it must be quick (append to a buffer). An exception
# it raises is logged once per client and otherwise ignored: a broken tap never costs the call.
FrameTap = Callable[[RawFrame], None]


class WebSocketProtocol(Protocol):
    """The websocket a client talks through: the seed's (Starlette's) ``send_json`` + ``receive_text``.

    Clients read with ``iter_text()`` when the socket has it (Starlette's and the project's Channels
    adapter do; the iteration ends when the socket closes), else by calling ``receive_text()`` until it
    raises (a disconnect).
    """

    async def send_json(self, data: Any) -> None: ...

    async def receive_text(self) -> str: ...


class IterTextWebSocket(Protocol):
    """A websocket read by iteration: ``iter_text()`` yields text frames and ends at close."""

    async def send_json(self, data: Any) -> None: ...

    def iter_text(self) -> AsyncIterator[str]: ...


def iter_websocket_text(websocket: WebSocketProtocol | IterTextWebSocket) -> AsyncIterator[str]:
    """The socket's text frames: ``iter_text()`` if it has one, else ``receive_text()`` until it raises.

    With ``receive_text()``, the exception that ends the loop propagates: the caller tells a disconnect
    from a failure (``is_disconnect``).
    """
    iter_text = getattr(websocket, "iter_text", None)
    if callable(iter_text):
        return iter_text()

    async def receive() -> AsyncIterator[str]:
        while True:
            yield await websocket.receive_text()  # type: ignore[union-attr]

    return receive()


def is_disconnect(exc: BaseException) -> bool:
    """Whether an exception from a websocket read means the peer went away (not a bug in the reader).

    Frameworks name it differently (Starlette ``WebSocketDisconnect``, websockets ``ConnectionClosed``,
    plain ``ConnectionError``s), so match on the class names rather than import them all.
    """
    if isinstance(exc, ConnectionError | EOFError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"WebSocketDisconnect", "ConnectionClosed", "ChannelClosed", "Disconnected"})


@runtime_checkable
class RealtimeClientProtocol(Protocol):
    """The public surface of a realtime client (the seed's ``OpenAIRealtimeWebRTCClient``).

    Every member is a method, so ``issubclass(SomeClient, RealtimeClientProtocol)`` works (Python refuses
    ``issubclass`` on a runtime-checkable Protocol with data members; AG2's own import test relies on it).
    The seed's ``logger`` property is therefore not part of the Protocol, though every client here has it.
    """

    def connect(self) -> AbstractAsyncContextManager[None]: ...

    def read_events(self) -> AsyncGenerator[RealtimeEvent, None]: ...

    async def add_event(self, event: RealtimeEvent | None) -> None: ...

    async def get_event(self) -> RealtimeEvent | None: ...

    async def queue_input_audio_buffer_delta(self, audio: str) -> None: ...

    async def send_function_result(self, call_id: str, result: str) -> None: ...

    async def send_text(self, *, role: Role, text: str) -> None: ...

    async def send_audio(self, audio: str) -> None: ...

    async def truncate_audio(self, audio_end_ms: int, content_index: int, item_id: str) -> None: ...

    async def session_update(self, session_options: dict[str, Any]) -> None: ...

    def session_init_data(self) -> list[dict[str, Any]]: ...

    @classmethod
    def get_factory(
        cls, llm_config: dict[str, Any], logger: logging.Logger, **kwargs: Any
    ) -> Callable[[], RealtimeClientProtocol] | None: ...


class RealtimeClientBase:
    """The bounded event queue shared by clients, and ``read_events`` on top of it."""

    def __init__(self, *, event_queue_size: int = DEFAULT_EVENT_QUEUE_SIZE) -> None:
        if event_queue_size < 1:
            raise ValueError(f"event_queue_size must be at least 1, got {event_queue_size}")
        self.event_queue_size = event_queue_size
        # An unbounded queue plus a semaphore: the semaphore bounds real events, and the end-of-stream
        # marker (None) skips it so it can always be delivered.
        self._event_queue: asyncio.Queue[RealtimeEvent | None] = asyncio.Queue()
        self._slots = asyncio.Semaphore(event_queue_size)
        self._stream_ended = False
        # End-of-stream markers queued and not yet taken: while one is pending, read_events must drain to
        # it rather than start reading the source again.
        self._ends_pending = 0

    async def add_event(self, event: RealtimeEvent | None) -> None:
        """Queue an event, waiting while the queue is full. ``None`` marks the end of the stream."""
        if event is None:
            self._ends_pending += 1
            self._event_queue.put_nowait(None)
            return
        await self._slots.acquire()
        self._event_queue.put_nowait(event)

    async def get_event(self) -> RealtimeEvent | None:
        """The next event; ``None`` once the stream has ended."""
        event = await self._event_queue.get()
        if event is not None:
            self._slots.release()
        else:
            self._ends_pending -= 1
        return event

    async def queue_input_audio_buffer_delta(self, audio: str) -> None:
        """Queue an ``InputAudioBufferDelta`` so observers (the Recorder) see audio the browser sent."""
        await self.add_event(InputAudioBufferDelta(delta=audio, item_id=None, raw_message={}))

    async def read_events(self) -> AsyncGenerator[RealtimeEvent, None]:
        """Yield typed events until the stream ends: the socket closed or ``connect()`` exited (quietly,
        no exception). Bad frames arrive as ``InvalidFrame`` events; reading goes on after them.

        When nothing is reading the source (``connect()`` is not active), the client reads it itself for
        as long as this generator runs, as the seed's did (``_start_own_reader``).
        """
        if self._stream_ended and self._event_queue.empty():
            return
        stop_own_reader = await self._start_own_reader() if self._ends_pending == 0 else None
        try:
            while True:
                event = await self.get_event()
                if event is None:
                    self._stream_ended = True
                    return
                yield event
        finally:
            if stop_own_reader is not None:
                await stop_own_reader()

    async def _start_own_reader(self) -> Callable[[], Awaitable[None]] | None:
        """Start reading the source if nothing reads it; return what stops that reader (or ``None``)."""
        return None


class ClientEventsMixin:
    """The seed's sending methods in GA shape, over one hook: ``_send_client_event(event)``.

    Shared by the relay client (the browser forwards the events on its data channel) and the sideband
    client (they go to OpenAI directly), so both send exactly the same frames.
    """

    _active_responses: set[str]

    @property
    def logger(self) -> logging.Logger:  # pragma: no cover - every client defines its own
        raise NotImplementedError

    async def _send_client_event(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    @property
    def response_in_progress(self) -> bool:
        return bool(self._active_responses)

    async def send_function_result(self, call_id: str, result: str) -> None:
        """Answer a function call with ``result`` exactly as given (a string, not re-encoded), then ask
        the model to go on."""
        await self._send_client_event(
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": call_id, "output": result},
            }
        )
        await self._send_client_event({"type": "response.create"})

    async def send_text(self, *, role: Role, text: str) -> None:
        """Add a text message and ask for a response, interrupting the current response if there is one."""
        if self._active_responses:
            await self._send_client_event({"type": "response.cancel"})
            # Cancelling is asked once; the response.done that confirms it may come later.
            self._active_responses.clear()
        content_type = "output_text" if role == "assistant" else "input_text"
        await self._send_client_event(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": role, "content": [{"type": content_type, "text": text}]},
            }
        )
        await self._send_client_event({"type": "response.create"})

    async def truncate_audio(self, audio_end_ms: int, content_index: int, item_id: str) -> None:
        """Cut the assistant's audio item at ``audio_end_ms`` (what the user actually heard)."""
        await self._send_client_event(
            {
                "type": "conversation.item.truncate",
                "content_index": content_index,
                "item_id": item_id,
                "audio_end_ms": audio_end_ms,
            }
        )

    async def session_update(self, session_options: dict[str, Any]) -> None:
        """Send ``session.update`` in GA shape.

        Raises ``SessionValidationError`` (a ``ValueError``) for beta or unknown fields rather than
        letting GA reject the whole update later, out of sight.
        """
        from voice.realtime.session import validate_session

        session = validate_session({"type": "realtime", **session_options}, partial=True)
        self.logger.info("Sending session update (%s)", ", ".join(sorted(session_options)) or "empty")
        await self._send_client_event({"type": "session.update", "session": session})

    def _track_response(self, event: RealtimeEvent) -> None:
        # send_text needs to know whether a response is in progress (cancelling none is an error upstream).
        if isinstance(event, ResponseCreated):
            self._active_responses.add(event.response_id or "")
        elif isinstance(event, ResponseDone):
            if event.response_id is None:
                self._active_responses.clear()
            else:
                self._active_responses.discard(event.response_id)


# --- registry -------------------------------------------------------------------------------------


class RealtimeClientFactoryProvider(Protocol):
    """A client class as the registry sees it."""

    # One line for error messages: which llm_configs and arguments this client accepts.
    supports: ClassVar[str]

    @classmethod
    def get_factory(
        cls, llm_config: dict[str, Any], logger: logging.Logger, **kwargs: Any
    ) -> Callable[[], RealtimeClientProtocol] | None: ...


_registry: list[type[RealtimeClientFactoryProvider]] = []


C = TypeVar("C", bound=type[RealtimeClientFactoryProvider])


def register_realtime_client(client_class: C) -> C:
    """Add a client class to the registry (usable as a decorator). Registering twice is a no-op."""
    if client_class not in _registry:
        _registry.append(client_class)
    return client_class


def registered_clients() -> tuple[type[RealtimeClientFactoryProvider], ...]:
    return tuple(_registry)


def get_client(llm_config: dict[str, Any], logger: logging.Logger, **kwargs: Any) -> RealtimeClientProtocol:
    """The first registered client whose factory accepts these arguments.

    Raises ``ValueError`` naming what was given (api_type, model, argument names; never the key) and what
    each registered client supports.
    """
    for client_class in _registry:
        factory = client_class.get_factory(llm_config, logger, **kwargs)
        if factory is not None:
            return factory()
    raise ValueError(
        f"No realtime client for {_describe(llm_config, kwargs)}. Supported: "
        + ("; ".join(f"{c.__name__} ({c.supports})" for c in _registry) or "no client is registered")
    )


def _describe(llm_config: Any, kwargs: dict[str, Any]) -> str:
    config: Any = {}
    if isinstance(llm_config, dict) and isinstance(llm_config.get("config_list"), list):
        config = llm_config["config_list"][0] if llm_config["config_list"] else {}
    if not isinstance(config, dict):
        config = {}
    return (
        f"api_type={config.get('api_type', '(absent)')!r}, model={config.get('model', '(absent)')!r}, "
        f"extra arguments {sorted(kwargs) or '(none)'}"
    )


__all__ = [
    "DEFAULT_EVENT_QUEUE_SIZE",
    "ClientEventsMixin",
    "FrameDirection",
    "FrameOrigin",
    "FrameTap",
    "IterTextWebSocket",
    "RawFrame",
    "RealtimeClientBase",
    "RealtimeClientFactoryProvider",
    "RealtimeClientProtocol",
    "Role",
    "WebSocketProtocol",
    "get_client",
    "is_disconnect",
    "iter_websocket_text",
    "register_realtime_client",
    "registered_clients",
]
