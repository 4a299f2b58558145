"""Settings for the realtime voice site.

Everything comes from the environment, with embedded defaults that make a bare checkout run:
DEBUG on, a SQLite file, the in-memory channel layer and the local OpenAI emulator. A malformed
value fails at start-up with an ImproperlyConfigured that names the variable, because a typo in
production should stop the deploy rather than quietly fall back to a default.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [part.strip() for part in raw.split(",") if part.strip()]


def env_url(name: str, default: str, *, schemes: tuple[str, ...]) -> str:
    raw = os.environ.get(name, default).strip()
    if not raw:
        return ""
    parsed = urlparse(raw)
    if parsed.scheme not in schemes or not parsed.netloc:
        raise ImproperlyConfigured(f"{name} must be a {'/'.join(schemes)} URL, got {raw!r}")
    return raw


# --- core -----------------------------------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", True)

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off")
    # Only ever used with DEBUG on: a development key that is obviously not a production one.
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production-8f2c"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
for _origin in CSRF_TRUSTED_ORIGINS:
    if urlparse(_origin).scheme not in ("http", "https"):
        raise ImproperlyConfigured(
            f"DJANGO_CSRF_TRUSTED_ORIGINS entries must start with http:// or https://, got {_origin!r}"
        )

# Websockets also accept the origin their request was addressed to (scheme + Host, port included), so
# that the development server and tests on any port work; production lists its origins explicitly
# (realtime_site/origins.py).
WEBSOCKET_ALLOW_SAME_ORIGIN = env_bool("DJANGO_WEBSOCKET_ALLOW_SAME_ORIGIN", DEBUG)

INSTALLED_APPS = [
    # daphne first: its runserver replaces Django's and serves websockets too.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "simple_history",
    "voice",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]
if not DEBUG:
    # Static files in production: collectstatic's hashed, compressed files, cached for a year. WhiteNoise
    # is WSGI middleware; under daphne, Django's ASGI handler runs it like any other. In debug the
    # development server serves the source files itself, as they are edited.
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "realtime_site.urls"
ASGI_APPLICATION = "realtime_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "voice.context_processors.site",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------------

_database_url = env_str("DATABASE_URL")
if _database_url:
    try:
        # Health checks: a persistent connection that died with a database restart is replaced before
        # use, instead of failing the first request (or recorder write) after the database is back.
        # Persistent connections serve the consumers' and the Recorder's one shared ORM thread; HTTP
        # requests close theirs when done (realtime_site/asgi.py: each runs in a thread of its own).
        _db = dj_database_url.parse(_database_url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
                                    conn_health_checks=True)
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
    if not _db.get("ENGINE"):
        raise ImproperlyConfigured("DATABASE_URL names an unsupported database scheme")
    if _db["ENGINE"] == "django.db.backends.postgresql":
        # An unreachable database host must fail a connection attempt in seconds, not after the
        # operating system's TCP retries (minutes): the recorder retries, spools and shuts down on time.
        _db.setdefault("OPTIONS", {}).setdefault("connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1))
    DATABASES = {"default": _db}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            # A voice session writes from the event loop's worker thread while pages read;
            # WAL plus a busy timeout keeps SQLite from answering "database is locked".
            "OPTIONS": {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- channel layer --------------------------------------------------------------------------------

REDIS_URL = env_url("REDIS_URL", "", schemes=("redis", "rediss", "unix"))
# redis-py (since 6) gives every connection a 5 s socket timeout by default, and channels_redis waits for
# a consumer's next message with a 5 s blocking read (BZPOPMIN, `brpop_timeout`): the empty reply came
# back just as the socket gave up, so every idle dashboard died after 5 s (close 1011, a traceback). The
# socket timeout must outlast the blocking read; it still bounds a read from a Redis that stopped
# answering. After a Redis restart every pooled connection is dead: channels_redis' pools retry nothing
# by default, so the first command on each failed (a dashboard closed, a broadcast lost); a few quick
# retries on a fresh connection ride over it. Keepalive and a periodic PING find half-open connections.
REDIS_SOCKET_TIMEOUT_SECONDS = env_float("REDIS_SOCKET_TIMEOUT_SECONDS", 15.0, minimum=10.0)


def redis_channel_layer(url: str) -> dict[str, object]:
    """The channel layer on the Redis at `url`, with the connection options it needs (see above)."""
    host = {
        "address": url,
        "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.1), 3),
    }
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [host], "capacity": 1500, "expiry": 30},
    }


if REDIS_URL:
    CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- auth, i18n, static ---------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
# Production serves what `collectstatic` (run when the image is built) wrote: hashed names, so a
# browser may keep each file for a year, with gzip/Brotli copies. Debug (`make run`) serves the
# source files as they are edited.
_FILESYSTEM = "django.core.files.storage.FileSystemStorage"
_recording_backend = env_str("VOICE_RECORDING_STORAGE", _FILESYSTEM)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Call recordings (voice/call_audio.py): the filesystem by default; any Django storage backend
    # (a django-storages bucket, say) by naming its class, configured by that backend's own settings.
    "recordings": {
        "BACKEND": _recording_backend,
        "OPTIONS": {"location": env_str("VOICE_RECORDING_DIR", str(BASE_DIR / "var" / "recordings"))}
        if _recording_backend == _FILESYSTEM else {},
    },
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage" if DEBUG
        else "realtime_site.storage.StaticFilesStorage",
    },
}
# Under ASGI, Django reads a WhiteNoise file response (a synchronous iterator) in one piece in a thread
# and warns about it once per process; for our small static files that is expected, not a fault.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")

# --- security (production) ------------------------------------------------------------------------

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    # The container's health check asks over plain HTTP from inside; a redirect to HTTPS would fail it.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- OpenAI and voice sessions --------------------------------------------------------------------

OPENAI_API_KEY = env_str("OPENAI_API_KEY")
OPENAI_BASE_URL = env_url("OPENAI_BASE_URL", "https://api.openai.com/v1", schemes=("http", "https"))
# With no key, the app talks to the local emulator (python manage.py realtime_emulator).
EMULATOR_URL = env_url("REALTIME_EMULATOR_URL", "http://127.0.0.1:8765/v1", schemes=("http", "https"))
# Azure OpenAI (voice/providers.py): the resource's endpoint and a credential, both from the environment
# only (a config may name another endpoint of the same tenant; the key or token never enters the
# database). An Entra ID token is used when no key is set; it expires, so whatever renews it must
# restart the process or (better) use a key.
AZURE_OPENAI_ENDPOINT = env_url("AZURE_OPENAI_ENDPOINT", "", schemes=("https",))
if AZURE_OPENAI_ENDPOINT and urlparse(AZURE_OPENAI_ENDPOINT).path.rstrip("/") not in ("", "/openai", "/openai/v1"):
    raise ImproperlyConfigured(
        f"AZURE_OPENAI_ENDPOINT must be the resource's address (https://my-resource.openai.azure.com), "
        f"got {AZURE_OPENAI_ENDPOINT!r}"
    )
if AZURE_OPENAI_ENDPOINT and (urlparse(AZURE_OPENAI_ENDPOINT).query or urlparse(AZURE_OPENAI_ENDPOINT).fragment):
    raise ImproperlyConfigured(f"AZURE_OPENAI_ENDPOINT must carry no query or fragment, got {AZURE_OPENAI_ENDPOINT!r}")
AZURE_OPENAI_API_KEY = env_str("AZURE_OPENAI_API_KEY").strip()
AZURE_OPENAI_AD_TOKEN = env_str("AZURE_OPENAI_AD_TOKEN").strip()
AZURE_OPENAI_DEPLOYMENT = env_str("AZURE_OPENAI_DEPLOYMENT").strip()
if AZURE_OPENAI_DEPLOYMENT and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", AZURE_OPENAI_DEPLOYMENT):
    raise ImproperlyConfigured(f"AZURE_OPENAI_DEPLOYMENT must be a deployment name, got {AZURE_OPENAI_DEPLOYMENT!r}")
_azure_credential = bool(AZURE_OPENAI_API_KEY or AZURE_OPENAI_AD_TOKEN)
if AZURE_OPENAI_ENDPOINT and not _azure_credential:
    raise ImproperlyConfigured(
        "AZURE_OPENAI_ENDPOINT is set but neither AZURE_OPENAI_API_KEY nor AZURE_OPENAI_AD_TOKEN is: Azure OpenAI "
        "would refuse every call"
    )
# With no credential at all, the app talks to the local emulator (python manage.py realtime_emulator),
# which serves OpenAI's paths and Azure's.
USING_EMULATOR = not OPENAI_API_KEY and not _azure_credential
if USING_EMULATOR and "OPENAI_BASE_URL" not in os.environ:
    OPENAI_BASE_URL = EMULATOR_URL
# Where configs that name no provider send their calls: Azure when only Azure is configured.
VOICE_PROVIDER = env_str("VOICE_PROVIDER", "azure" if _azure_credential and not OPENAI_API_KEY else "openai")
VOICE_PROVIDER = VOICE_PROVIDER.strip().lower()
if VOICE_PROVIDER not in ("openai", "azure"):
    raise ImproperlyConfigured(f"VOICE_PROVIDER must be 'openai' or 'azure', got {VOICE_PROVIDER!r}")
if VOICE_PROVIDER == "azure" and not USING_EMULATOR and not (AZURE_OPENAI_ENDPOINT and _azure_credential):
    raise ImproperlyConfigured(
        "VOICE_PROVIDER is azure but AZURE_OPENAI_ENDPOINT and a credential (AZURE_OPENAI_API_KEY or "
        "AZURE_OPENAI_AD_TOKEN) are not both set"
    )
OPENAI_TIMEOUT_SECONDS = env_float("OPENAI_TIMEOUT_SECONDS", 10.0, minimum=0.1)

VOICE_MAX_FRAME_BYTES = env_int("VOICE_MAX_FRAME_BYTES", 256 * 1024, minimum=1024)
VOICE_MAX_MESSAGES_PER_SECOND = env_int("VOICE_MAX_MESSAGES_PER_SECOND", 200, minimum=1)
VOICE_MAX_CONCURRENT_SESSIONS_PER_USER = env_int("VOICE_MAX_CONCURRENT_SESSIONS_PER_USER", 3, minimum=1)
VOICE_MAX_SESSION_STARTS_PER_MINUTE = env_int("VOICE_MAX_SESSION_STARTS_PER_MINUTE", 10, minimum=1)
# Check every ag2.* frame and dashboard message against its schema (voice/schemas.py) where it is sent,
# and fail loudly if one does not match. The tests turn it on; off in production, where it only costs time.
VOICE_VALIDATE_OUTGOING = env_bool("VOICE_VALIDATE_OUTGOING", False)
VOICE_RECORDER_BATCH_SIZE = env_int("VOICE_RECORDER_BATCH_SIZE", 200, minimum=1)
VOICE_RECORDER_FLUSH_SECONDS = env_float("VOICE_RECORDER_FLUSH_SECONDS", 0.25, minimum=0.01)
# Bounds of what one session may add to the record. The defaults are far beyond any real conversation
# (an hour of speech is ~60k characters; a realtime model's context is ~32-128k tokens per response):
# they exist so that a hostile or broken client cannot grow a row, a process or a bill without limit.
VOICE_MAX_ITEM_TEXT_CHARS = env_int("VOICE_MAX_ITEM_TEXT_CHARS", 100_000, minimum=1000)
VOICE_MAX_SESSION_TEXT_CHARS = env_int("VOICE_MAX_SESSION_TEXT_CHARS", 2_000_000, minimum=1000)
VOICE_MAX_RESPONSE_TOKENS = env_int("VOICE_MAX_RESPONSE_TOKENS", 1_000_000, minimum=1000)
VOICE_MAX_SESSION_TOKENS = env_int("VOICE_MAX_SESSION_TOKENS", 500_000_000, minimum=1000)
# A closed session's rows that the database refused (an outage) are retried this long, then spooled.
VOICE_RECORDER_CLOSE_DEADLINE_SECONDS = env_float("VOICE_RECORDER_CLOSE_DEADLINE_SECONDS", 300.0, minimum=0.0)
# Rows a stopping process could not write go here (JSON lines, replayed at start-up and by replay_spool).
VOICE_SPOOL_DIR = env_str("VOICE_SPOOL_DIR", str(BASE_DIR / "var" / "spool"))
# The serving process renews its live sessions' heartbeat this often; a live session not renewed for
# the grace no longer counts against its user's limit and is ended as `server_lost`.
VOICE_HEARTBEAT_SECONDS = env_float("VOICE_HEARTBEAT_SECONDS", 10.0, minimum=0.05)
VOICE_HEARTBEAT_GRACE_SECONDS = env_float("VOICE_HEARTBEAT_GRACE_SECONDS", 3 * VOICE_HEARTBEAT_SECONDS,
                                          minimum=0.1)
if VOICE_HEARTBEAT_GRACE_SECONDS <= VOICE_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured("VOICE_HEARTBEAT_GRACE_SECONDS must be longer than VOICE_HEARTBEAT_SECONDS")
# Server mode: a call with no browser attached (its page closed, or its socket dropped and not resumed)
# is hung up after this long and its session ended as `abandoned`.
# Call recordings (voice/call_audio.py): the browser uploads the call's audio a chunk at a time.
VOICE_RECORDING_CHUNK_MS = env_int("VOICE_RECORDING_CHUNK_MS", 1000, minimum=250)
VOICE_RECORDING_MAX_CHUNK_BYTES = env_int("VOICE_RECORDING_MAX_CHUNK_BYTES", 1024 * 1024, minimum=16 * 1024)
VOICE_RECORDING_MAX_BYTES = env_int("VOICE_RECORDING_MAX_BYTES", 200 * 1024 * 1024, minimum=1024 * 1024)
VOICE_RECORDING_MAX_CHUNKS_PER_MINUTE = env_int("VOICE_RECORDING_MAX_CHUNKS_PER_MINUTE", 240, minimum=10)
# The last chunks arrive just after the call ends (the page stops its recorder as it hangs up).
VOICE_RECORDING_UPLOAD_GRACE_SECONDS = env_float("VOICE_RECORDING_UPLOAD_GRACE_SECONDS", 60.0, minimum=1.0)
VOICE_RESUME_GRACE_SECONDS = env_float("VOICE_RESUME_GRACE_SECONDS", 30.0, minimum=1.0)
# GPT-Live (docs/gpt-live.md). Creating a WebRTC session bills this many seconds, credited once it runs: a
# session that never started is billed them. OpenAI says 15 s "with the default startup behavior".
VOICE_LIVE_CREATION_CHARGE_SECONDS = env_float("VOICE_LIVE_CREATION_CHARGE_SECONDS", 15.0, minimum=0.0)
# Ending a GPT-Live call: how long to wait for session.closed (its final usage) after session.close.
VOICE_LIVE_CLOSE_WAIT_SECONDS = env_float("VOICE_LIVE_CLOSE_WAIT_SECONDS", 3.0, minimum=0.0)

# --- logging --------------------------------------------------------------------------------------

LOG_LEVEL = env_str("DJANGO_LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"DJANGO_LOG_LEVEL must be DEBUG/INFO/WARNING/ERROR/CRITICAL, got {LOG_LEVEL!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "voice": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        # `manage.py realtime_emulator` logs like the app it stands in for.
        "realtime_emulator": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
