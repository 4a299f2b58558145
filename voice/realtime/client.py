"""What a realtime client is (``RealtimeClientProtocol``), the event queue every client shares
(``RealtimeClientBase``), and the registry that picks a client for an llm_config (``get_client``).

The queue is bounded: when observers fall behind, ``add_event`` waits, so the reader stops pulling frames
off the websocket instead of buffering without limit. The end of the stream is a ``None`` that bypasses
the bound (it must get through even when the queue is full, or a reader could wait forever).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

from voice.realtime.events import InputAudioBufferDelta, RealtimeEvent

DEFAULT_EVENT_QUEUE_SIZE = 1000
Role = Literal["user", "assistant", "system"]


class WebSocketProtocol(Protocol):
    """The websocket a client talks through (the Starlette shape the seed assumed; Channels adapts to it)."""

    async def send_json(self, data: Any) -> None: ...

    def iter_text(self) -> AsyncIterator[str]:
        """Incoming text frames; the iteration ends when the socket closes."""
        ...


@runtime_checkable
class RealtimeClientProtocol(Protocol):
    """The public surface of a realtime client (the seed's ``OpenAIRealtimeWebRTCClient``)."""

    @property
    def logger(self) -> logging.Logger: ...

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

    async def add_event(self, event: RealtimeEvent | None) -> None:
        """Queue an event, waiting while the queue is full. ``None`` marks the end of the stream."""
        if event is None:
            self._event_queue.put_nowait(None)
            return
        await self._slots.acquire()
        self._event_queue.put_nowait(event)

    async def get_event(self) -> RealtimeEvent | None:
        """The next event; ``None`` once the stream has ended."""
        event = await self._event_queue.get()
        if event is not None:
            self._slots.release()
        return event

    async def queue_input_audio_buffer_delta(self, audio: str) -> None:
        """Queue an ``InputAudioBufferDelta`` so observers (the Recorder) see audio the browser sent."""
        await self.add_event(InputAudioBufferDelta(delta=audio, item_id=None, raw_message={}))

    async def read_events(self) -> AsyncGenerator[RealtimeEvent, None]:
        """Yield typed events until the stream ends: the socket closed or ``connect()`` exited (quietly,
        no exception). Bad frames arrive as ``InvalidFrame`` events; reading goes on after them."""
        if self._stream_ended and self._event_queue.empty():
            return
        while True:
            event = await self.get_event()
            if event is None:
                self._stream_ended = True
                return
            yield event


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
    "RealtimeClientBase",
    "RealtimeClientFactoryProvider",
    "RealtimeClientProtocol",
    "Role",
    "WebSocketProtocol",
    "get_client",
    "register_realtime_client",
    "registered_clients",
]
