"""The data set of bench_scale.py, generated inside PostgreSQL with generate_series.

300 users; sessions numbered g = 0, 1, 2, ... (newest first, one every 30 s), each with 20 transcript
items, 10 events, one usage row and a tool call every fourth session; one session in 167 is live. One
long session (2,000 items, 20,000 events, 200 tool calls, 600 usage rows) belongs to user scale0.
`grow(n)` adds sessions up to n, so the same database is measured at 1,000 and then at 100,000.

Columns this file does not name get their model default, so a field added later does not break it.
Transcript text is drawn from a vocabulary of 240 words (realistic trigram statistics), and one item in
50,000 carries the rare word "quokka" so that a search can be measured both for a rare and a common word.
"""

from __future__ import annotations

import time
from typing import Any

VOCABULARY = (
    "weather tomorrow rain sunny cloudy forecast today city please could would should book table dinner "
    "restaurant seven eight nine ten eleven twelve morning evening night order pizza pasta salad coffee tea "
    "water thanks thank you hello hi there how are doing great fine good bad okay sure certainly absolutely "
    "maybe perhaps question answer help need want like love hate music song play pause stop next previous "
    "volume louder quieter timer alarm minutes hours seconds remind reminder meeting calendar schedule "
    "appointment doctor dentist friday monday tuesday wednesday thursday saturday sunday week month year "
    "flight hotel train ticket travel paris london berlin tokyo york madrid rome lisbon vienna prague "
    "weather temperature degrees celsius fahrenheit wind humidity umbrella jacket coat warm cold hot "
    "account balance payment transfer bank card number address street phone email message send read "
    "write note list shopping milk bread eggs butter cheese apples bananas oranges tomatoes potatoes "
    "recipe cook bake oven minutes boil fry grill chicken beef fish rice beans soup sandwich lunch "
    "breakfast snack dessert chocolate cake cookie ice cream sugar salt pepper garlic onion olive oil "
    "translate spanish french german italian japanese chinese word sentence meaning spell pronounce "
    "story joke tell funny another again repeat slower faster louder explain simple detail example"
)
WORDS = VOCABULARY.split()


def _defaults(model: Any, named: set[str]) -> tuple[list[str], list[Any]]:
    """The model default of every concrete column not in `named`, ready to be sent as parameters."""
    from django.db import connection

    columns, values = [], []
    for field in model._meta.concrete_fields:
        if field.column in named or field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        values.append(field.get_db_prep_save(field.get_default(), connection))
    return columns, values


def _insert(model: Any, select_columns: dict[str, str], from_sql: str, params: list[Any] | None = None) -> int:
    """INSERT INTO <model> (named + defaulted columns) SELECT <named exprs>, <defaults> FROM <from_sql>.

    `params` fill the `%s` of the named expressions, in order; `%` elsewhere is SQL's modulo."""
    from django.db import connection

    named = set(select_columns)
    pk = model._meta.pk
    if pk.column not in named:
        named.add(pk.column)  # serial: let the database number it
    extra_cols, extra_vals = _defaults(model, named)
    cols = [connection.ops.quote_name(c) for c in select_columns] + extra_cols
    exprs = [e.replace("%", "%%").replace("%%s", "%s") for e in select_columns.values()] + ["%s"] * len(extra_vals)
    sql = (f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({', '.join(cols)}) "
           f"SELECT {', '.join(exprs)} FROM {from_sql.replace('%', '%%')}")
    with connection.cursor() as cursor:
        cursor.execute(sql, [*(params or []), *extra_vals])
        return int(cursor.rowcount)


SENTENCES = 50_000


def make_sentences() -> None:
    """A table of 50,000 sentences of 6-19 words (benchmark database only); items pick from it by number."""
    from django.db import connection

    words = "ARRAY[" + ",".join(f"'{w}'" for w in WORDS) + "]"
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_scale_sentences")
        cursor.execute("CREATE UNLOGGED TABLE bench_scale_sentences (k int PRIMARY KEY, t text NOT NULL)")
        cursor.execute(
            f"INSERT INTO bench_scale_sentences SELECT n, (SELECT string_agg(({words})"
            f"[1 + abs(hashtext(n || ':' || k)) % {len(WORDS)}], ' ') FROM generate_series(1, 6 + n % 14) k) "
            f"FROM generate_series(0, {SENTENCES - 1}) n"
        )


PAYLOAD = {
    "type": "realtime", "model": "gpt-realtime", "instructions": "You are a helpful, concise voice assistant. " * 8,
    "output_modalities": ["audio"],
    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                        "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                                           "silence_duration_ms": 500},
                        "transcription": {"model": "gpt-4o-mini-transcribe"}, "noise_reduction": None},
              "output": {"voice": "marin", "speed": 1.0}},
    "tools": [{"type": "function", "name": "get_time", "description": "The current time.",
               "parameters": {"type": "object", "properties": {}}}],
    "tool_choice": "auto", "max_output_tokens": "inf",
}
LONG_SESSION = "10000000-0000-4000-8000-000000000001"
USERS = 300
MODELS = ("gpt-realtime", "gpt-realtime-mini", "gpt-realtime-2")
EVENT_TYPES = ("session.update", "input_audio_buffer.speech_started", "conversation.item.added",
               "response.created", "response.output_audio_transcript.delta", "response.output_audio_transcript.done",
               "conversation.item.done", "response.done", "rate_limits.updated", "output_audio_buffer.stopped")


def _session_id(g: str) -> str:
    return f"md5('session-' || {g})::uuid"


def make_users() -> tuple[int, int]:
    """300 users scale0..scale299 and the admin `scaleadmin`; returns (first user id, admin id)."""
    from django.contrib.auth.models import User

    from benchmarks import harness as h

    _insert(User, {"password": "'!'", "username": "'scale' || g", "email": "'scale' || g || '@example.com'",
                   "is_active": "true", "is_staff": "false", "is_superuser": "false", "date_joined": "now()"},
            f"generate_series(0, {USERS - 1}) g")
    admin = User.objects.create_superuser("scaleadmin", "admin@example.com", h.PASSWORD)
    return User.objects.get(username="scale0").pk, admin.pk


def grow(first: int, upto: int, *, first_user: int, config_id: int) -> dict[str, float]:
    """Sessions g in [first, upto) with their items, events, usage and tool calls. Returns seconds taken."""
    from django.db import connection, transaction

    from voice.models import ResponseUsage, SessionEvent, ToolCall, TranscriptItem, VoiceSession

    timings: dict[str, float] = {}
    step = 10_000
    # A bulk load builds its indexes once at the end (see _drop_bulk_indexes) and skips the row-by-row
    # foreign-key triggers (the generated rows are consistent by construction; superuser only, as the
    # benchmark database's owner is).
    bulk = upto - first > 20_000
    rebuild = _drop_bulk_indexes() if bulk else []
    if bulk:
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = replica")
    for lo in range(first, upto, step):
        hi = min(lo + step, upto)
        rng = f"generate_series({lo}, {hi - 1}) g"
        with transaction.atomic():
            t0 = time.perf_counter()
            models_sql = "(ARRAY[" + ",".join(f"'{m}'" for m in MODELS) + f"])[1 + g % {len(MODELS)}]"
            _insert(VoiceSession, {
                "id": _session_id("g"), "user_id": f"{first_user} + g % {USERS}", "config_id": str(config_id),
                "config_name": "'Default'", "model": models_sql, "session_payload": "%s::jsonb",
                "status": "CASE WHEN g % 167 = 0 THEN 'active' WHEN g % 53 = 0 THEN 'failed' ELSE 'ended' END",
                "call_id": "'rtc_' || md5('call-' || g)", "openai_session_id": "'sess_' || md5('oai-' || g)",
                "started_at": "now() - g * interval '30 seconds'",
                "connected_at": "now() - g * interval '30 seconds' + interval '1 second'",
                "ended_at": "CASE WHEN g % 167 = 0 THEN NULL ELSE now() - g * interval '30 seconds' "
                            "+ interval '5 minutes' END",
                "end_reason": "CASE WHEN g % 167 = 0 THEN '' ELSE 'hangup' END",
                "turns": "10", "input_tokens": "1200 + g % 500", "output_tokens": "800 + g % 300",
                "total_tokens": "2000 + g % 800", "cost_usd": "0.012345",
            }, rng, [_json(PAYLOAD)])
            timings["sessions"] = timings.get("sessions", 0) + time.perf_counter() - t0
            t0 = time.perf_counter()
            n = "(g * 20 + i)"
            _insert(TranscriptItem, {
                "session_id": _session_id("g"), "item_id": "'item_' || g || '_' || i",
                "previous_item_id": "CASE WHEN i = 0 THEN '' ELSE 'item_' || g || '_' || (i - 1) END",
                "response_id": "CASE WHEN i % 2 = 1 THEN 'resp_' || g || '_' || i ELSE '' END",
                "role": "CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END", "kind": "'message'",
                "text": f"st.t || CASE WHEN {n} % 50000 = 7 THEN ' quokka' ELSE '' END",
                "status": "CASE WHEN i = 7 THEN 'truncated' ELSE 'completed' END",
                "created_at": "now() - g * interval '30 seconds' + i * interval '10 seconds'",
                "completed_at": "now() - g * interval '30 seconds' + i * interval '10 seconds'",
            }, f"{rng} CROSS JOIN generate_series(0, 19) i JOIN bench_scale_sentences st ON st.k = {n} % {SENTENCES}")
            timings["items"] = timings.get("items", 0) + time.perf_counter() - t0
            t0 = time.perf_counter()
            types = "(ARRAY[" + ",".join(f"'{t}'" for t in EVENT_TYPES) + "])"
            _insert(SessionEvent, {
                "session_id": _session_id("g"), "seq": "s", "direction": "'internal'",
                "type": f"{types}[s]",
                "payload": f"jsonb_build_object('type', {types}[s], 'event_id', 'event_' || g || '_' || s, "
                           "'response_id', 'resp_' || g, 'item_id', 'item_' || g || '_' || s)",
                "created_at": "now() - g * interval '30 seconds' + s * interval '20 seconds'",
            }, f"{rng} CROSS JOIN generate_series(1, 10) s")
            _insert(ResponseUsage, {
                "session_id": _session_id("g"), "response_id": "'resp_' || g", "status": "'completed'",
                "model": "'gpt-realtime'", "total_tokens": "2000", "input_tokens": "1200", "output_tokens": "800",
                "cost_usd": "0.012345", "created_at": "now() - g * interval '30 seconds' + interval '1 minute'",
            }, rng)
            _insert(ToolCall, {
                "session_id": _session_id("g"), "call_id": "'call_' || g", "name": "'get_weather'",
                "arguments": "jsonb_build_object('city', 'Paris')", "output": "'{\"temperature\": 21}'",
                "status": "'succeeded'", "started_at": "now() - g * interval '30 seconds' + interval '40 seconds'",
                "duration_ms": "120",
            }, f"{rng} WHERE g % 4 = 0")
            timings["events_usage_tools"] = timings.get("events_usage_tools", 0) + time.perf_counter() - t0
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        if bulk:
            cursor.execute("SET session_replication_role = DEFAULT")
            cursor.execute("SET maintenance_work_mem = '1GB'")
            for statement in rebuild:
                started = time.perf_counter()
                cursor.execute(statement)
                key = "text_index" if "gin_trgm_ops" in statement else "indexes"
                timings[key] = timings.get(key, 0) + time.perf_counter() - started
            t0 = time.perf_counter()
        cursor.execute("ANALYZE")
    timings["analyze"] = time.perf_counter() - t0
    return {k: round(v, 2) for k, v in timings.items()}


BULK_TABLES = ("voice_voicesession", "voice_transcriptitem", "voice_sessionevent", "voice_responseusage",
               "voice_toolcall")


def _drop_bulk_indexes() -> list[str]:
    """Drop the secondary indexes and unique constraints of the tables a bulk load fills; return the
    statements that recreate them (the trigram index last).

    Session ids are random (md5), so every composite index keyed by session takes each row at a random
    page: kept up to date row by row they cost more than the rows, and building each once at the end is
    what any bulk load does. The definitions are read from the migrated database, so they stay the
    migrations' own."""
    from django.db import connection

    tables = list(BULK_TABLES)
    with connection.cursor() as cursor:
        cursor.execute("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE contype = 'u' AND conrelid::regclass::text = ANY(%s)", [tables])
        constraints = cursor.fetchall()
        cursor.execute("SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                       "WHERE i.indrelid::regclass::text = ANY(%s) AND NOT i.indisprimary AND NOT EXISTS "
                       "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)", [tables])
        indexes = cursor.fetchall()
        for table, name, _ in constraints:
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {name}")
    rebuild = [f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}' for table, name, definition in constraints]
    rebuild += sorted((definition for _, definition in indexes), key=lambda d: "gin_trgm_ops" in d)
    return rebuild


def make_long_session(*, first_user: int, config_id: int) -> None:
    """One session with 2,000 items, 20,000 events, 200 tool calls and 600 usage rows (user scale0)."""
    from django.db import transaction

    from voice.models import ResponseUsage, SessionEvent, ToolCall, TranscriptItem, VoiceSession

    sid = f"'{LONG_SESSION}'::uuid"
    with transaction.atomic():
        _insert(VoiceSession, {
            "id": sid, "user_id": str(first_user), "config_id": str(config_id), "config_name": "'Default'",
            "model": "'gpt-realtime'", "session_payload": "%s::jsonb", "status": "'ended'",
            "call_id": "'rtc_long'", "started_at": "now() - interval '2 hours'",
            "ended_at": "now() - interval '1 hour'", "end_reason": "'max_duration'", "turns": "1000",
            "input_tokens": "600000", "output_tokens": "400000", "total_tokens": "1000000", "cost_usd": "12.5",
        }, "(SELECT 1) one", [_json(PAYLOAD)])
        _insert(TranscriptItem, {
            "session_id": sid, "item_id": "'long_' || i",
            "previous_item_id": "CASE WHEN i = 0 THEN '' ELSE 'long_' || (i - 1) END",
            "role": "CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END",
            "kind": "CASE WHEN i % 10 = 5 THEN 'function_call' WHEN i % 10 = 6 THEN 'function_call_output' "
                    "ELSE 'message' END",
            "name": "CASE WHEN i % 10 = 5 THEN 'get_weather' ELSE '' END",
            "text": "st.t", "status": "'completed'",
            "created_at": "now() - interval '2 hours' + i * interval '1 second'",
        }, f"generate_series(0, 1999) i JOIN bench_scale_sentences st ON st.k = (i * 7919) % {SENTENCES}")
        _insert(SessionEvent, {
            "session_id": sid, "seq": "s", "direction": "'internal'",
            "type": "'response.output_audio_transcript.delta'",
            "payload": "jsonb_build_object('type', 'response.output_audio_transcript.delta', 'delta', 'word ' || s)",
            "created_at": "now() - interval '2 hours' + s * interval '100 milliseconds'",
        }, "generate_series(1, 20000) s")
        _insert(ToolCall, {
            "session_id": sid, "call_id": "'long_call_' || c", "name": "'get_weather'",
            "arguments": "jsonb_build_object('city', 'Paris', 'n', c)", "output": "'{\"temperature\": 21}'",
            "status": "'succeeded'", "started_at": "now() - interval '2 hours' + c * interval '10 seconds'",
            "duration_ms": "120",
        }, "generate_series(0, 199) c")
        _insert(ResponseUsage, {
            "session_id": sid, "response_id": "'long_resp_' || r", "status": "'completed'", "model": "'gpt-realtime'",
            "total_tokens": "1666", "input_tokens": "1000", "output_tokens": "666", "cost_usd": "0.02",
            "created_at": "now() - interval '2 hours' + r * interval '3 seconds'",
        }, "generate_series(0, 599) r")


def _json(value: Any) -> str:
    import json

    return json.dumps(value)
