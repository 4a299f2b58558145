"""``OpenAIRealtimeWebRTCClient``: the seed's client, speaking the GA Realtime interface.

With WebRTC the browser holds the call. This client mints a short-lived client secret with the server's
API key, hands it to the browser in ``ag2.init``, sends client events for the browser to put on its data
channel, and reads the server events the browser relays back over the same websocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import httpx

from voice.realtime.calls import auth_headers
from voice.realtime.calls import tls_context as _tls_context
from voice.realtime.client import (
    DEFAULT_EVENT_QUEUE_SIZE,
    ClientEventsMixin,
    IterTextWebSocket,
    RealtimeClientBase,
    RealtimeClientProtocol,
    WebSocketProtocol,
    is_disconnect,
    iter_websocket_text,
    register_realtime_client,
)
from voice.realtime.errors import (
    InvalidFrameError,
    RealtimeAuthError,
    RealtimeConfigError,
    RealtimeDeploymentNotFoundError,
    RealtimeError,
    RealtimeProtocolError,
    RealtimeRateLimitedError,
    RealtimeRequestRejectedError,
    RealtimeTimeoutError,
    RealtimeUpstreamUnavailableError,
    RealtimeWebRTCUnavailableError,
    redact,
)
from voice.realtime.events import InvalidFrame, parse_frame
from voice.realtime.providers import auth_for, credential_secrets, service_name
from voice.realtime.session import first_config, normalise_api_base, session_from_llm_config, without_secrets
from voice.realtime.throttle import ThrottledLog

_module_logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_EXPIRES_AFTER_SECONDS = 600
MIN_EXPIRES_AFTER_SECONDS, MAX_EXPIRES_AFTER_SECONDS = 10, 7200
_UPSTREAM_MESSAGE_CHARS = 300
# Frames that could not be read at all are the browser's fault and get an ag2.error back (rule 5).
# Unreadable *content* relayed from OpenAI (invalid_event, invalid_function_arguments) is not.
_BROWSER_FRAME_FAULTS = {"invalid_json", "not_an_object", "missing_type"}


@register_realtime_client
class OpenAIRealtimeWebRTCClient(ClientEventsMixin, RealtimeClientBase):
    """Client for the OpenAI Realtime API (GA) when the browser holds the WebRTC call.

    ``llm_config["config_list"][0]``:

    - ``model`` (required), ``voice`` (default ``"alloy"``), ``api_key`` (the server's key; without one no
      Authorization header is sent, which suits the local emulator), ``api_type`` (``"openai"``, or
      ``"azure"``: the key then goes in an ``api-key`` header, or ``azure_ad_token`` as a Bearer token,
      ``base_url`` is the resource's ``.../openai/v1`` and ``model`` the deployment name),
      ``base_url``: the API base, default ``https://api.openai.com/v1``. A seed-era value ending in
      ``/realtime/sessions`` is cut back to its base and logged once as deprecated.

    Top-level ``llm_config`` keys:

    - ``temperature``: read for compatibility with the seed, never sent (GA has none; logged once).
    - ``session``: a prebuilt GA session object (``VoiceConfig.to_session_payload()``). It replaces the
      session translated from ``config_list[0]``; it is validated, and gets ``model`` from the config list
      if it has none.
    - ``session_id``: our session id for ``ag2.init`` (default: a fresh uuid4).
    - ``timeout``: seconds for the whole client-secret request (default 10).
    - ``expires_after_seconds``: how long the client secret may start a call, 10..7200 (default 600).
    - ``event_queue_size``: bound of the event queue (default 1000); a full queue stops the reader.
    - ``emulator``: true when ``base_url`` is the local OpenAI emulator; error messages then name it.

    One ``connect()`` per client. The API key never appears in a frame, an exception or a log line.
    """

    supports: ClassVar[str] = "api_type 'openai', 'azure' or absent, and exactly one extra argument: websocket"

    def __init__(
        self,
        *,
        llm_config: dict[str, Any],
        websocket: WebSocketProtocol | IterTextWebSocket,
        logger: logging.Logger | None = None,
    ) -> None:
        self._llm_config = llm_config
        self._logger = logger
        self._invalid_frame_log: ThrottledLog | None = None
        self._websocket = websocket

        config = first_config(llm_config)
        self._config = config
        self._model: str = config["model"]
        self._voice: str = config.get("voice") or "alloy"
        self._api_key: str | None = config.get("api_key") or None
        self._api_type: str = config.get("api_type") or "openai"
        self._auth = auth_for(config)
        self._secrets = credential_secrets(config)
        # Kept because the seed read it; GA has no temperature, so it is never sent (session.py logs it).
        self._temperature: float | None = llm_config.get("temperature")
        self._base_url = normalise_api_base(config.get("base_url"), self.logger)
        # The local emulator stands in for OpenAI (llm_config["emulator"]): failures then name it, since
        # what the person can do differs (start it) from what they can do about OpenAI (wait).
        self._emulator = bool(llm_config.get("emulator", False))

        self._timeout = _number(llm_config.get("timeout", DEFAULT_TIMEOUT_SECONDS), "timeout", minimum=0.001)
        self._expires_after_seconds = int(
            _number(
                llm_config.get("expires_after_seconds", DEFAULT_EXPIRES_AFTER_SECONDS),
                "expires_after_seconds",
                minimum=MIN_EXPIRES_AFTER_SECONDS,
                maximum=MAX_EXPIRES_AFTER_SECONDS,
            )
        )
        queue_size = int(_number(llm_config.get("event_queue_size", DEFAULT_EVENT_QUEUE_SIZE), "event_queue_size", 1))
        super().__init__(event_queue_size=queue_size)

        self._session = session_from_llm_config(llm_config, self.logger)
        self._session_id = str(llm_config.get("session_id") or uuid.uuid4())
        self._active_responses: set[str] = set()
        self._reader: asyncio.Task[None] | None = None
        self.effective_session: dict[str, Any] | None = None
        self.expires_at: int | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} model={self._model!r} session_id={self._session_id!r}>"

    # --- properties -------------------------------------------------------------------------------

    @property
    def logger(self) -> logging.Logger:
        """The logger given to the constructor, else this module's."""
        return self._logger or _module_logger

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def model(self) -> str:
        return self._model

    @property
    def api_base(self) -> str:
        return self._base_url

    @property
    def calls_url(self) -> str:
        return f"{self._base_url}/realtime/calls"

    @property
    def session(self) -> dict[str, Any]:
        """The GA session this client mints with."""
        return copy.deepcopy(self._session)

    @property
    def openai_session_id(self) -> str | None:
        """OpenAI's ``sess_...`` id, known once ``connect()`` has minted."""
        return (self.effective_session or {}).get("id")

    # --- sending ---------------------------------------------------------------------------------
    # send_function_result, send_text, truncate_audio and session_update are ClientEventsMixin's: the
    # browser forwards what they send on its data channel.

    async def _send_client_event(self, event: dict[str, Any]) -> None:
        await self._websocket.send_json(event)

    async def send_audio(self, audio: str) -> None:
        """With WebRTC the browser already sends the audio; queue it so observers can log it."""
        await self.queue_input_audio_buffer_delta(audio)

    def session_init_data(self) -> list[dict[str, Any]]:
        """The client events the browser sends first on the data channel.

        The GA counterpart of the seed's initial update (turn detection, voice, modalities): it re-asserts
        the minted session's audio settings and output modality. Temperature has no GA counterpart.
        """
        session: dict[str, Any] = {"type": "realtime"}
        for key in ("output_modalities", "audio"):
            if key in self._session:
                session[key] = copy.deepcopy(self._session[key])
        return [{"type": "session.update", "session": session}]

    # --- connecting -------------------------------------------------------------------------------

    @asynccontextmanager
    async def connect(self) -> AsyncGenerator[None, None]:
        """Mint a client secret, send ``ag2.init``, and read the browser's relayed events until exit.

        On failure, sends ``ag2.error`` and raises the typed ``RealtimeError``. Leaves nothing running.
        """
        try:
            minted = await self._mint_client_secret()
        except RealtimeError as exc:
            self.logger.warning("Realtime session %s could not start: [%s] %s (%s)", self._session_id, exc.code,
                                exc.message, exc.detail)
            await self._send_error_frame(exc)
            raise
        await self._websocket.send_json(self._init_frame(minted))
        self._stream_ended = False
        self._reader = asyncio.create_task(self._read_websocket(), name=f"realtime-reader-{self._session_id}")
        try:
            yield
        finally:
            reader, self._reader = self._reader, None
            reader.cancel()
            # Wait for the reader to finish so that no task outlives connect().
            await asyncio.gather(reader, return_exceptions=True)

    # read_events() is RealtimeClientBase's: the reader task above fills the queue it drains. Not
    # overridden here, since wrapping one async generator in another leaves the inner one to the
    # garbage collector when the outer is closed early.

    async def _mint_client_secret(self) -> dict[str, Any]:
        url = f"{self._base_url}/realtime/client_secrets"
        headers = {"Content-Type": "application/json", **await auth_headers(self._auth)}
        body = {
            "expires_after": {"anchor": "created_at", "seconds": self._expires_after_seconds},
            "session": self._session,
        }
        try:
            # One deadline for the whole request, on top of httpx's per-phase timeouts.
            async with (
                asyncio.timeout(self._timeout),
                httpx.AsyncClient(timeout=self._timeout, verify=_tls_context()) as http,
            ):
                response = await http.post(url, headers=headers, json=body)
        except (TimeoutError, httpx.TimeoutException):
            raise RealtimeTimeoutError(
                f"{self._service} did not answer in time. " + (
                    "Check that it is running (`make run` starts it) and try again." if self._emulator
                    else "Please try again in a moment."),
                detail=f"POST {url}: no answer within {self._timeout:g} s",
            ) from None
        except httpx.HTTPError as exc:
            # `from None`: the transport error goes to `detail`; the person gets what they can do.
            raise RealtimeUpstreamUnavailableError(
                "The local OpenAI emulator is not running. Start it with `make run` (or `python manage.py "
                "realtime_emulator`) and try again." if self._emulator else
                f"The voice service ({service_name(self._api_type)}) could not be reached. Please try again in a "
                "moment; if it keeps failing, tell your administrator.",
                detail=f"POST {url}: {type(exc).__name__}: {self._redact(str(exc))}",
            ) from None
        return self._read_mint_response(response, url)

    @property
    def _service(self) -> str:
        return "The local OpenAI emulator" if self._emulator else f"The voice service ({service_name(self._api_type)})"

    def _read_mint_response(self, response: httpx.Response, url: str) -> dict[str, Any]:
        status = response.status_code
        upstream_code, upstream_message = self._upstream_error(response)
        # What OpenAI said, for the logs and the record: it may name fields and parameters.
        detail = f"POST {url}: HTTP {status}" + (f", {upstream_code}" if upstream_code else "") + (
            f": {upstream_message}" if upstream_message else "")
        azure = self._api_type == "azure"
        if status == 401:
            raise RealtimeAuthError(
                f"{self._service} refused this server's credentials. An administrator must check the server's "
                + ("Azure OpenAI key (or Entra ID token) and endpoint." if azure else "OpenAI API key."),
                detail=detail,
                status_code=status,
                upstream_code=upstream_code,
            )
        if status == 404 and upstream_code == "DeploymentNotFound":
            raise RealtimeDeploymentNotFoundError(
                f"The Azure OpenAI resource has no deployment named {self._model!r}. An administrator must check the "
                "deployment name in the voice configuration (it is the deployment's name, not the model's).",
                detail=detail,
                status_code=status,
                upstream_code=upstream_code,
            )
        if status == 404 and azure:
            raise RealtimeWebRTCUnavailableError(
                "This Azure OpenAI resource does not offer realtime calls. An administrator must use a resource in "
                "a region that supports the Realtime API over WebRTC, with a realtime model deployed.",
                detail=detail,
                status_code=status,
                upstream_code=upstream_code,
            )
        if status == 403:
            raise RealtimeAuthError(
                f"This server's {service_name(self._api_type)} account may not use the model {self._model!r}. An "
                "administrator must check the account's permissions or choose another model.",
                detail=detail,
                status_code=status,
                upstream_code=upstream_code,
            )
        if status == 429:
            raise RealtimeRateLimitedError(
                f"{self._service} is busy with this server's requests. Wait a moment and try again.",
                retry_after=_retry_after(response),
                detail=detail,
                status_code=status,
                upstream_code=upstream_code,
            )
        if status >= 500:
            raise RealtimeUpstreamUnavailableError(
                f"{self._service} is unavailable right now. Please try again in a moment.",
                detail=detail,
                status_code=status,
                upstream_code=upstream_code,
            )
        if not 200 <= status < 300 and upstream_code == "model_not_found":
            raise RealtimeRequestRejectedError(
                f"{self._service} does not offer the model {self._model!r}; it may have been retired. An administrator "
                "must choose a current model in the voice configuration.",
                detail=detail,
                status_code=status,
                upstream_code=upstream_code,
            )
        if not 200 <= status < 300:
            raise RealtimeRequestRejectedError(
                f"{self._service} rejected this voice configuration. An administrator must check its model, "
                "voice and options.",
                detail=detail,
                status_code=status,
                upstream_code=upstream_code,
            )
        try:
            data = response.json()
        except ValueError:
            raise RealtimeProtocolError(
                f"{self._service} answered in a way this server does not understand. An administrator must "
                "check the address the server uses for OpenAI.",
                detail=f"{detail}: the body is not JSON",
                status_code=status,
            ) from None
        # GA answers {"value", "expires_at", "session"}; tolerate the older {"client_secret": {...}} shape.
        secret = data.get("client_secret") if isinstance(data, dict) and "value" not in data else data
        if (
            not isinstance(secret, dict)
            or not isinstance(secret.get("value"), str)
            or not secret["value"]
            or not isinstance(secret.get("expires_at"), int)
        ):
            raise RealtimeProtocolError(
                f"{self._service} answered in a way this server does not understand. An administrator must "
                "check the address the server uses for OpenAI.",
                detail=f"{detail}: no client secret (value, expires_at) in the answer",
                status_code=status,
            )
        session = data.get("session")
        return {
            "value": secret["value"],
            "expires_at": secret["expires_at"],
            "session": session if isinstance(session, dict) else copy.deepcopy(self._session),
        }

    def _upstream_error(self, response: httpx.Response) -> tuple[str | None, str | None]:
        """OpenAI's error code and message, redacted and shortened (401 bodies echo a masked key)."""
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            return None, None
        if not isinstance(error, dict):
            return None, None
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else None
        if message:
            message = self._redact(message)[:_UPSTREAM_MESSAGE_CHARS]
        return (self._redact(code) if code else None), message

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def _init_frame(self, minted: dict[str, Any]) -> dict[str, Any]:
        # The browser sees the session it starts, never a credential a tool of it carries.
        minted = {**minted, "session": without_secrets(minted["session"])}
        self.effective_session = minted["session"]
        self.expires_at = minted["expires_at"]
        return {
            "type": "ag2.init",
            "protocol": PROTOCOL_VERSION,
            "session_id": self._session_id,
            "config": {
                "value": minted["value"],
                "expires_at": minted["expires_at"],
                "model": minted["session"].get("model") or self._model,
                "calls_url": self.calls_url,
                "session": minted["session"],
            },
            "init": self.session_init_data(),
        }

    async def _send_error_frame(self, error: RealtimeError) -> None:
        try:
            await self._websocket.send_json(error.to_frame())
        except Exception as exc:
            # The browser may already be gone; the caller still gets the original error.
            self.logger.info("Could not send ag2.error %s: %s", error.code, type(exc).__name__)

    # --- reading ----------------------------------------------------------------------------------

    async def _read_websocket(self) -> None:
        """Read the browser's relayed frames into the queue until the socket closes; always end the stream.

        A disconnect ends the stream quietly; any other failure is logged with its traceback and ends the
        stream too, so a reader never dies unnoticed and ``read_events`` never waits forever.
        """
        frames = iter_websocket_text(self._websocket)
        try:
            async for frame in frames:
                event = parse_frame(frame)
                if isinstance(event, InvalidFrame):
                    await self._report_invalid_frame(event)
                self._track_response(event)
                # Waits while the queue is full: backpressure on the websocket.
                await self.add_event(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_disconnect(exc):
                self.logger.info("Realtime websocket of session %s closed: %s", self._session_id, type(exc).__name__)
            else:
                self.logger.error(
                    "Realtime websocket reader of session %s failed; the event stream ends",
                    self._session_id,
                    exc_info=exc,
                )
        finally:
            # Close an async-generator iterator now; left to the garbage collector, its aclose() would
            # run as a task that outlives connect().
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
            await self.add_event(None)

    async def _start_own_reader(self) -> Callable[[], Awaitable[None]] | None:
        """``read_events()`` outside ``connect()`` reads the websocket itself (the seed's behaviour)."""
        if self._reader is not None:
            return None
        reader = asyncio.create_task(self._read_websocket(), name=f"realtime-own-reader-{self._session_id}")

        async def stop() -> None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

        return stop

    async def _report_invalid_frame(self, event: InvalidFrame) -> None:
        if self._invalid_frame_log is None:
            self._invalid_frame_log = ThrottledLog(self.logger)
        # Once per kind of fault, then counts: a poisoned stream wrote several lines a second.
        self._invalid_frame_log.warning(
            event.code,
            "Ignoring unreadable frame in session %s: [%s] %s; frame: %r",
            self._session_id,
            event.code,
            event.message,
            event.excerpt,
        )
        if event.code in _BROWSER_FRAME_FAULTS:
            await self._send_error_frame(
                InvalidFrameError(f"{event.message}; the frame was ignored and the session goes on.")
            )

    # --- registry ---------------------------------------------------------------------------------

    @classmethod
    def get_factory(
        cls, llm_config: dict[str, Any], logger: logging.Logger, **kwargs: Any
    ) -> Callable[[], RealtimeClientProtocol] | None:
        """A factory when ``api_type`` is ``"openai"``, ``"azure"`` or absent and the only extra argument is
        ``websocket``; else ``None``."""
        try:
            api_type = llm_config["config_list"][0].get("api_type", "openai")
        except (KeyError, IndexError, TypeError, AttributeError):
            return None
        if api_type in ("openai", "azure") and list(kwargs) == ["websocket"]:
            return lambda: cls(llm_config=llm_config, logger=logger, **kwargs)
        return None


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _number(value: Any, name: str, minimum: float, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RealtimeConfigError(f"llm_config[{name!r}] must be a number, got {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum:g} and {maximum:g}" if maximum is not None else f"at least {minimum:g}"
        raise RealtimeConfigError(f"llm_config[{name!r}] must be {bounds}, got {value!r}")
    return float(value)


__all__ = ["OpenAIRealtimeWebRTCClient"]
