"""Starting a voice session: the limits a user must pass, and the agent that serves the session."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from voice import call_audio, catalog, lease, mcp, providers
from voice.agent import Observer, ToolContext, VoiceAgent
from voice.models import VoiceConfig, VoiceSession
from voice.protocol import CLOSE_FORBIDDEN, CLOSE_MODEL_RETIRED, CLOSE_NOT_FOUND, CLOSE_RATE_LIMITED
from voice.realtime import OpenAIRealtimeWebRTCClient, RealtimeClientProtocol
from voice.realtime.calls import hangup
from voice.realtime.gptlive import PROTOCOL as GPT_LIVE
from voice.realtime.gptlive import live_hangup, split_session
from voice.recording import Recorder, RecorderObserver
from voice.tools import get_tool

logger = logging.getLogger(__name__)

# The emulator accepts any standard-looking key; it never sees a real one.
EMULATOR_KEY = providers.EMULATOR_KEY


class SessionRefused(Exception):
    def __init__(self, code: str, message: str, *, close_code: int, retryable: bool = False) -> None:
        super().__init__(message)
        self.code, self.message, self.close_code, self.retryable = code, message, close_code, retryable


def api_key() -> str:
    """The OpenAI key (the emulator's without one); Azure's credential is ``providers.resolve``'s."""
    return settings.OPENAI_API_KEY or (EMULATOR_KEY if settings.USING_EMULATOR else "")


def provider_for(session: VoiceSession) -> providers.Provider:
    """The service this session's call lives on, with today's credential (raises ProviderNotConfigured)."""
    return providers.resolve(session.provider or "openai", session.api_base)


def browser_holds_call(config: VoiceConfig) -> bool:
    """Relay mode: the browser creates the call and sees the session on its own data channel."""
    return config.call_mode == VoiceConfig.CallMode.RELAY


def check_config_can_start(config: VoiceConfig, today: date | None = None) -> None:
    """Refuse, before anything is sent to OpenAI, a config that cannot work: a shut-down model, or an MCP
    credential the browser would be able to see."""
    today = today or catalog.today()
    live = config.protocol == VoiceConfig.Protocol.LIVE
    if live and config.call_mode != VoiceConfig.CallMode.SERVER:
        raise SessionRefused(
            "live_needs_server_mode",
            "This assistant uses GPT-Live, which only works with server-controlled calls, so it cannot start. Ask "
            "an administrator to switch it to server-controlled calls.",
            close_code=4403,
        )
    for name in () if live else (config.model, config.input_transcription_model):
        model = catalog.info(name) if name else None
        if model is not None and model.retired_on(today):
            raise SessionRefused(
                "model_retired",
                f"This assistant uses {name}, which OpenAI shut down on {model.shutdown:%Y-%m-%d}, so it cannot "
                "start. Ask an administrator to switch the assistant to a current model.",
                close_code=CLOSE_MODEL_RETIRED,
            )
    try:
        providers.for_config(config)
    except providers.ProviderNotConfigured as exc:
        logger.warning("Voice config %r cannot start: %s", config.name, exc.detail)
        raise SessionRefused("provider_not_configured", exc.message, close_code=CLOSE_FORBIDDEN) from None
    if config.mcp_credential_env and browser_holds_call(config):
        raise SessionRefused(
            "credential_needs_server_mode",
            "This assistant uses a tool service with a private credential, which must not reach the browser, "
            "so it cannot start in this connection mode. Ask an administrator to switch it to server-controlled "
            "calls.",
            close_code=CLOSE_FORBIDDEN,
        )


@database_sync_to_async
def start_session(user: Any, slug: str | None, *, today: date | None = None,
                  recording: str | None = None) -> VoiceSession:
    """Check the user may start a session now, then create it from the config's current payload.

    `recording` is the user's answer (`yes`/`no`) to the recording notice the page shows before a call
    of a config that records: a config that requires consent starts no call without it."""
    config = VoiceConfig.objects.for_slug_or_default(slug)
    if config is None:
        what = f"No active voice configuration named {slug!r}." if slug else "No voice configuration is active."
        raise SessionRefused("config_not_found", what, close_code=CLOSE_NOT_FOUND)
    check_config_can_start(config, today)
    try:
        recording_consent = call_audio.consent_for(config, recording)
    except ValueError:
        raise SessionRefused(
            "recording_consent_required",
            "This assistant records its calls, so a call can only start once you agree to the recording.",
            close_code=CLOSE_FORBIDDEN,
        ) from None
    # Sessions whose process died count no more: end them now rather than lock the user out.
    grace = settings.VOICE_HEARTBEAT_GRACE_SECONDS
    VoiceSession.end_unserved(grace, user=user)
    live = VoiceSession.objects.served(grace).filter(user=user).count()
    if live >= settings.VOICE_MAX_CONCURRENT_SESSIONS_PER_USER:
        raise SessionRefused(
            "too_many_sessions",
            f"You already have {live} live session(s); hang up one before starting another.",
            close_code=CLOSE_RATE_LIMITED,
            retryable=True,
        )
    recent = VoiceSession.objects.filter(user=user, started_at__gte=timezone.now() - timedelta(minutes=1)).count()
    if recent >= settings.VOICE_MAX_SESSION_STARTS_PER_MINUTE:
        raise SessionRefused(
            "rate_limited",
            "Too many sessions started in the last minute; wait a moment and try again.",
            close_code=CLOSE_RATE_LIMITED,
            retryable=True,
        )
    server_mode = config.call_mode == VoiceConfig.CallMode.SERVER
    provider = providers.for_config(config)
    payload = config.to_session_payload()
    live = config.protocol == VoiceConfig.Protocol.LIVE
    if provider.kind == "azure" and not live:
        # Azure names the model by its deployment; the session row keeps the model (prices, retirements).
        payload["model"] = providers.deployment_for(config)
    return VoiceSession.objects.create(
        user=user,
        config=config,
        config_name=config.name,
        model=config.live_model if live else config.model,
        mode=config.call_mode,
        protocol=config.protocol,
        provider=provider.kind,
        api_base=provider.api_base if provider.kind == "azure" else "",
        # Server mode: this process holds the call from the start (voice.lease).
        served_by=lease.PROCESS_TOKEN if server_mode else "",
        session_payload=payload,
        max_duration_seconds=config.max_session_seconds,
        recording_consent=recording_consent,
    )


def is_live(session: VoiceSession) -> bool:
    return session.protocol == VoiceConfig.Protocol.LIVE


def request_argument(tool_name: str) -> str:
    """The argument of a backend tool that gets the user's words since the last delegation (GPT-Live gives
    a delegation no task text): a string parameter named ``request`` or ``query``, if the tool has one."""
    if not tool_name:
        return ""
    try:
        properties = get_tool(tool_name).parameters_schema().get("properties", {})
    except KeyError:
        return ""
    for name in ("request", "query"):
        if properties.get(name, {}).get("type") == "string":
            return name
    return ""


def live_llm_config_for(session: VoiceSession) -> dict[str, Any]:
    """GPT-Live's llm_config: the session as created, and this server's settings for it (``gptlive``)."""
    wire, own = split_session(session.session_payload)
    delegation = wire.get("delegation") or {"type": "client"}
    backend_tool = str(own.get("backend_tool") or "")
    provider = provider_for(session)
    return {
        "config_list": [{"model": wire.get("model") or session.model, **provider.llm_entry()}],
        "protocol": GPT_LIVE,
        "session": session.session_payload,
        "session_id": str(session.pk),
        "timeout": settings.OPENAI_TIMEOUT_SECONDS,
        "emulator": provider.emulator,
        "gptlive": {
            "delegation": delegation.get("type", "client"),
            "backend_tool": backend_tool,
            "request_argument": request_argument(backend_tool),
            "responses_model": (delegation.get("responses") or {}).get("model", ""),
            "transcript_gap_ms": int(own.get("transcript_gap_ms") or 2000),
        },
    }


def llm_config_for(session: VoiceSession) -> dict[str, Any]:
    if is_live(session):
        return live_llm_config_for(session)
    payload = session.session_payload
    voice = payload.get("audio", {}).get("output", {}).get("voice", "marin")
    if isinstance(voice, dict):  # a custom voice {"id": "voice_..."}
        voice = str(voice.get("id") or "marin")
    config = session.config
    # The stored payload holds no credential. Only a request the server sends itself may carry one: the
    # session's own mode decides (its config may have been switched since).
    if config is not None and session.mode == VoiceConfig.CallMode.SERVER:
        payload = mcp.with_credentials(payload, config)
    provider = provider_for(session)
    return {
        # The model the service knows: Azure's deployment name is in the payload, OpenAI's model too.
        "config_list": [{"model": payload.get("model") or session.model, "voice": voice, **provider.llm_entry()}],
        "session": payload,
        "session_id": str(session.pk),
        "timeout": settings.OPENAI_TIMEOUT_SECONDS,
        "expires_after_seconds": config.secret_lifetime_seconds if config else 600,
        # Without a key the app talks to the local emulator; a failure to reach it then says so.
        "emulator": provider.emulator,
    }


# The Recorder's observer: typed events and each tool call's end (status, duration, output) go to it.
# Kept under this name for callers of the earlier, tool-calls-only observer.
RecordToolCalls = RecorderObserver


def build_agent(session: VoiceSession, websocket: Any, recorder: Recorder) -> VoiceAgent:
    """Relay mode: the agent's client talks through the browser's websocket."""
    llm_config = llm_config_for(session)
    client = OpenAIRealtimeWebRTCClient(llm_config=llm_config, websocket=websocket, logger=logger)
    return agent_for(session, llm_config, client, recorder)


def agent_for(session: VoiceSession, llm_config: dict[str, Any], client: RealtimeClientProtocol,
              recorder: Recorder, observers: list[Observer] | None = None) -> VoiceAgent:
    """The session's agent over any client (relay: the browser's websocket; server mode: the sideband)."""
    if llm_config.get("protocol") == GPT_LIVE:
        return _live_agent(session, llm_config, client, recorder, observers)
    session_tools = llm_config["session"].get("tools", [])
    tool_names = [t["name"] for t in session_tools if t.get("type", "function") == "function"]
    # OpenAI runs MCP servers itself; the agent re-declares them so that its session update keeps them.
    hosted = [t for t in session_tools if t.get("type") == "mcp"]
    return VoiceAgent(
        client=client,
        system_message=session.session_payload.get("instructions"),
        tools=[get_tool(name) for name in tool_names],
        # The Recorder hears the session through the agent: the typed events, whichever client parsed them.
        observers=[recorder.observer(), *(observers or [])],
        hosted_tools=hosted,
        # Tools act for the session's user, whatever a (possibly forged) function call says.
        context=ToolContext(user_id=session.user_id, username=session.user.get_username(),
                            session_id=str(session.pk)),
        logger=logger,
    )


def _live_agent(session: VoiceSession, llm_config: dict[str, Any], client: RealtimeClientProtocol,
                recorder: Recorder, observers: list[Observer] | None) -> VoiceAgent:
    """A GPT-Live session's agent: its tools are those the delegated model may call, or the one that serves
    delegations to this server. The voice's instructions went with the session's creation."""
    options = llm_config["gptlive"]
    if options["delegation"] == "responses":
        tools = (llm_config["session"].get("delegation") or {}).get("responses", {}).get("tools", [])
        names = [t["name"] for t in tools if t.get("type") == "function"]
    else:
        names = [options["backend_tool"]] if options["backend_tool"] else []
    return VoiceAgent(
        client=client,
        system_message=None,
        tools=[get_tool(name) for name in names],
        observers=[recorder.observer(), *(observers or [])],
        context=ToolContext(user_id=session.user_id, username=session.user.get_username(),
                            session_id=str(session.pk)),
        logger=logger,
    )


async def hang_up_call(session: VoiceSession, call_id: str | None = None) -> bool:
    """Hang up the session's call on the service it lives on (its own stored call id by default)."""
    call_id = call_id or session.call_id
    try:
        provider = provider_for(session)
    except providers.ProviderNotConfigured as exc:
        logger.warning("Session %s: cannot hang up call %s: %s", session.pk, call_id, exc.detail)
        return False
    if is_live(session):
        return await live_hangup(provider.api_base, call_id or "", auth=provider.auth(),
                                 timeout=settings.OPENAI_TIMEOUT_SECONDS)
    return await hangup(provider.api_base, None, call_id, auth=provider.auth(),
                        timeout=settings.OPENAI_TIMEOUT_SECONDS)
