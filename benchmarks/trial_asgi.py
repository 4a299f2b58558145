"""benchmarks.echo_asgi with proposed fixes patched in at start-up, to measure a fix before it is made.

The product code is not changed: each trial below monkeypatches, inside the benchmark's own daphne
process only, exactly the change proposed in benchmarks/README.md ("Misses and proposed fixes"). Pick
trials with BENCH_TRIALS=name,name (the scripts' `--trial` option sets it). Figures measured with a
trial are written to <benchmark>-trial-<names>.json and never replace the real figures.

Trials:
  dispatch      VoiceSessionConsumer skips channels' per-message `aclose_old_connections()` hop to the
                single sync thread for websocket.receive (its ORM work already runs in
                database_sync_to_async, which closes old connections itself).
  writer_pool   the Recorder's batch writes run on the worker pool (thread_sensitive=False) instead of
                the one sync thread that every consumer's ORM work shares.
  mint_client   the client-secret mint reuses one SSL context instead of building one (loading the CA
                bundle) for every new httpx.AsyncClient.
  upsert        the Recorder writes transcript items and tool calls with one INSERT ... ON CONFLICT DO
                UPDATE instead of bulk_create + bulk_update (CASE WHEN ...).
  pubsub        the channel layer is channels_redis' RedisPubSubChannelLayer (a group_send is one
                PUBLISH) instead of RedisChannelLayer (sorted sets + Lua: 2-4 round trips per send).
                Every process of a deployment must use the same layer: run all servers with it.

Server settings that are plain environment variables (e.g. VOICE_RECORDER_FLUSH_SECONDS) need no
trial: the scripts' `--server-env KEY=VALUE` passes them to the benchmark's daphne processes.
"""

from __future__ import annotations

import os
from typing import Any

TRIALS = {name.strip() for name in os.environ.get("BENCH_TRIALS", "").split(",") if name.strip()}
KNOWN = {"dispatch", "writer_pool", "mint_client", "upsert", "pubsub"}
if TRIALS - KNOWN:
    raise SystemExit(f"unknown trial(s) {sorted(TRIALS - KNOWN)}; known: {sorted(KNOWN)}")


if "pubsub" in TRIALS:
    import django

    from benchmarks.harness import use_pubsub_layer

    django.setup()
    use_pubsub_layer()

from benchmarks.echo_asgi import application as inner  # noqa: E402  (Django is set up by this import)


def _dispatch() -> None:
    from voice.consumers import VoiceSessionConsumer

    original = VoiceSessionConsumer.dispatch

    async def dispatch(self: Any, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
            return
        await original(self, message)

    VoiceSessionConsumer.dispatch = dispatch  # type: ignore[method-assign]


def _writer_pool() -> None:
    from channels.db import DatabaseSyncToAsync

    import voice.recording

    voice.recording.database_sync_to_async = (  # type: ignore[attr-defined]
        lambda fn: DatabaseSyncToAsync(fn, thread_sensitive=False))


def _mint_client() -> None:
    import types

    import httpx

    import voice.realtime.webrtc as webrtc

    context = httpx.create_ssl_context()
    shim = types.SimpleNamespace(**{k: getattr(httpx, k) for k in dir(httpx) if not k.startswith("__")})
    shim.AsyncClient = lambda *args, **kwargs: httpx.AsyncClient(*args, verify=context, **kwargs)
    webrtc.httpx = shim  # type: ignore[attr-defined]


def _upsert() -> None:
    from voice.recording import Recorder

    def upsert(self: Any, model: Any, key: str, rows: dict[str, dict[str, Any]], fields: list[str],
               create_only: list[str]) -> dict[str, int]:
        if not rows:
            return {}
        columns = [key, *fields, *create_only]
        objs = model.objects.bulk_create(
            [model(session_id=self.session_id, **{c: r[c] for c in columns}) for r in rows.values()],
            update_conflicts=True, unique_fields=["session", key], update_fields=fields,
        )
        return {getattr(obj, key): obj.pk for obj in objs if obj.pk is not None}

    Recorder._upsert = upsert  # type: ignore[method-assign]


for _name in sorted(TRIALS):
    {"dispatch": _dispatch, "writer_pool": _writer_pool, "mint_client": _mint_client, "upsert": _upsert,
     "pubsub": lambda: None}[_name]()

application = inner
