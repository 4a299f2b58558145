"""benchmarks.echo_asgi with proposed fixes patched in at start-up, to measure a fix before it is made.

The product code is not changed: each trial below monkeypatches, inside the benchmark's own daphne
process only, exactly the change proposed in benchmarks/README.md ("Misses and proposed fixes"). Pick
trials with BENCH_TRIALS=name,name (the scripts' `--trial` option sets it). Figures measured with a
trial are written to <benchmark>-trial-<names>.json and never replace the real figures.

Trials:
  phases        (measurement only, no fix) logs how long each step of a session start takes inside the
                server: auth (session + user), start_session, agent build, mint, up to ag2.init sent;
                bench_session_start.py summarises the lines ("bench-phase ...") into its result.
  start_query   start_session checks both per-user limits with one aggregate query instead of two
                COUNT queries.
  writer_pool   the Recorder's batch writes run on the worker pool (thread_sensitive=False) instead of
                the one sync thread that every consumer's ORM work shares.
  pubsub        the channel layer is channels_redis' RedisPubSubChannelLayer (a group_send is one
                PUBLISH) instead of RedisChannelLayer (sorted sets + Lua: 2-4 round trips per send).
                Every process of a deployment must use the same layer: run all servers with it.

One more trial acts on the benchmark database rather than in the server (benchmarks/harness.py):
  live_index    a partial index on voice_voicesession (user_id) WHERE status IN ('connecting',
                'active'), so start_session's live-session count does not walk the user's history.

Server settings that are plain environment variables (e.g. VOICE_RECORDER_FLUSH_SECONDS) need no
trial: the scripts' `--server-env KEY=VALUE` passes them to the benchmark's daphne processes.
"""

from __future__ import annotations

import os
from typing import Any

TRIALS = {name.strip() for name in os.environ.get("BENCH_TRIALS", "").split(",") if name.strip()}
KNOWN = {"writer_pool", "pubsub", "start_query", "phases", "gclog", "looplag"}
if TRIALS - KNOWN:
    raise SystemExit(f"unknown trial(s) {sorted(TRIALS - KNOWN)}; known: {sorted(KNOWN)}")


if "pubsub" in TRIALS:
    import django

    from benchmarks.harness import use_pubsub_layer

    django.setup()
    use_pubsub_layer()

from benchmarks.echo_asgi import application as inner  # noqa: E402  (Django is set up by this import)


def _writer_pool() -> None:
    from channels.db import DatabaseSyncToAsync

    import voice.recording

    voice.recording.database_sync_to_async = (  # type: ignore[attr-defined]
        lambda fn: DatabaseSyncToAsync(fn, thread_sensitive=False))


def _start_query() -> None:
    from datetime import timedelta

    from channels.db import database_sync_to_async
    from django.conf import settings
    from django.db.models import Count, Q
    from django.utils import timezone

    from voice import sessions
    from voice.models import VoiceConfig, VoiceSession

    @database_sync_to_async
    def start_session(user: Any, slug: str | None) -> VoiceSession:
        config = VoiceConfig.objects.for_slug_or_default(slug)
        if config is None:
            raise sessions.SessionRefused("config_not_found", "No voice configuration.", close_code=4404)
        counts = VoiceSession.objects.filter(user=user).aggregate(
            live=Count("pk", filter=Q(status__in=[VoiceSession.Status.CONNECTING, VoiceSession.Status.ACTIVE])),
            recent=Count("pk", filter=Q(started_at__gte=timezone.now() - timedelta(minutes=1))),
        )
        if counts["live"] >= settings.VOICE_MAX_CONCURRENT_SESSIONS_PER_USER:
            raise sessions.SessionRefused("too_many_sessions", "Too many live sessions.", close_code=4429,
                                          retryable=True)
        if counts["recent"] >= settings.VOICE_MAX_SESSION_STARTS_PER_MINUTE:
            raise sessions.SessionRefused("rate_limited", "Too many session starts.", close_code=4429,
                                          retryable=True)
        return VoiceSession.objects.create(user=user, config=config, config_name=config.name, model=config.model,
                                           session_payload=config.to_session_payload(),
                                           max_duration_seconds=config.max_session_seconds)

    sessions.start_session = start_session


def _phases() -> None:
    import logging
    import time

    import channels.auth

    import voice.consumers
    import voice.realtime.webrtc as webrtc
    from voice import sessions

    log = logging.getLogger("voice.bench")
    started: dict[int, float] = {}

    def timed(name: str, fn: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                log.warning("bench-phase %s %.3f", name, (time.perf_counter() - t0) * 1000)
        return wrapper

    channels.auth.get_user = timed("auth_get_user", channels.auth.get_user)
    sessions.start_session = timed("start_session", sessions.start_session)
    webrtc.OpenAIRealtimeWebRTCClient._mint_client_secret = timed(
        "mint", webrtc.OpenAIRealtimeWebRTCClient._mint_client_secret)
    consumer = voice.consumers.VoiceSessionConsumer
    original_connect, original_send_frame = consumer.connect, consumer.send_frame

    async def connect(self: Any) -> None:
        started[id(self)] = time.perf_counter()
        await original_connect(self)
        log.warning("bench-phase consumer_connect %.3f", (time.perf_counter() - started[id(self)]) * 1000)

    async def send_frame(self: Any, data: Any) -> None:
        await original_send_frame(self, data)
        if isinstance(data, dict) and data.get("type") == "ag2.init" and id(self) in started:
            log.warning("bench-phase connect_to_init_sent %.3f", (time.perf_counter() - started.pop(id(self))) * 1000)

    consumer.connect, consumer.send_frame = connect, send_frame  # type: ignore[method-assign]


def _gclog() -> None:
    """(measurement only) log every garbage collection that pauses the process for over 10 ms."""
    import gc
    import logging
    import time

    log = logging.getLogger("voice.bench")
    started: dict[str, float] = {}

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started["t"] = time.perf_counter()
            return
        ms = (time.perf_counter() - started.get("t", time.perf_counter())) * 1000
        if ms > 10:
            log.warning("bench-gc generation %d %.1f ms collected %d objects %d", info["generation"], ms,
                        info["collected"], len(gc.get_objects()))

    gc.callbacks.append(callback)


def _looplag() -> None:
    """(measurement only) log, with monotonic times, every event-loop stall over 30 ms and every
    Recorder write round and watch poll, to line them up with the slowest fan-out frames."""
    import asyncio
    import logging
    import time

    from voice import broadcast, recording

    log = logging.getLogger("voice.bench")

    async def probe() -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(0.01)
            lag = (time.monotonic() - t0 - 0.01) * 1000
            if lag > 30:
                log.warning("bench-lag at %.3f lag %.1f ms", t0, lag)

    original_round = recording._Writer.write_round

    async def write_round(self: Any) -> None:
        t0 = time.monotonic()
        await original_round(self)
        log.warning("bench-round at %.3f took %.1f ms sessions %d", t0, (time.monotonic() - t0) * 1000,
                    len(self.recorders))

    recording._Writer.write_round = write_round  # type: ignore[method-assign]
    original_refresh = broadcast._Outbox.refresh

    async def refresh(self: Any) -> None:
        t0 = time.monotonic()
        await original_refresh(self)
        ms = (time.monotonic() - t0) * 1000
        if ms > 10:
            log.warning("bench-poll at %.3f took %.1f ms", t0, ms)

    broadcast._Outbox.refresh = refresh  # type: ignore[method-assign]
    original_add = broadcast._Outbox.add
    started: list[bool] = []

    def add(self: Any, b: Any) -> None:
        if not started:
            started.append(True)
            asyncio.get_running_loop().create_task(probe())
        original_add(self, b)

    broadcast._Outbox.add = add  # type: ignore[method-assign]


for _name in sorted(TRIALS):
    {"writer_pool": _writer_pool, "pubsub": lambda: None,
     "start_query": _start_query, "phases": _phases, "gclog": _gclog, "looplag": _looplag}[_name]()

application = inner
