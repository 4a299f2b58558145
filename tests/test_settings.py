"""Settings come from the environment, fall back to embedded defaults, and fail loudly on bad values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "x" * 20 + "-production-secret-key-with-enough-entropy-8d7f6a5s4",
    "DJANGO_ALLOWED_HOSTS": "voice.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://voice.example.com",
}
PROBE = """
import json
from django.conf import settings
print(json.dumps({
    "debug": settings.DEBUG,
    "engine": settings.DATABASES["default"]["ENGINE"],
    "db_name": settings.DATABASES["default"]["NAME"],
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "layer_hosts": settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("hosts"),
    "openai_base": settings.OPENAI_BASE_URL,
    "emulator": settings.USING_EMULATOR,
    "provider": settings.VOICE_PROVIDER,
    "allowed_hosts": settings.ALLOWED_HOSTS,
    "first_app": settings.INSTALLED_APPS[0],
}, default=repr))
"""


def _clean_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "OPENAI_", "REDIS_", "DATABASE_", "AZURE_OPENAI_", "VOICE_PROVIDER"))}
    env["DJANGO_SETTINGS_MODULE"] = "realtime_site.settings"
    env.update(overrides)
    return env


def _settings(**env: str) -> subprocess.CompletedProcess[str]:
    code = "import django; django.setup()\n" + PROBE
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_clean_env(**env), capture_output=True,
                          text=True, timeout=60)


def _values(**env: str) -> dict:
    result = _settings(**env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_with_no_environment_debug_sqlite_and_the_in_memory_layer_are_used() -> None:
    values = _values()
    assert values["debug"] is True
    assert values["engine"] == "django.db.backends.sqlite3"
    assert values["layer"] == "channels.layers.InMemoryChannelLayer"
    assert values["first_app"] == "daphne"


def test_with_no_openai_key_the_app_points_at_the_local_emulator() -> None:
    values = _values()
    assert values["emulator"] is True
    assert values["openai_base"] == "http://127.0.0.1:8765/v1"


def test_with_an_openai_key_the_default_base_is_openai() -> None:
    values = _values(OPENAI_API_KEY="sk-test-not-real")
    assert values["emulator"] is False
    assert values["openai_base"] == "https://api.openai.com/v1"


def test_azure_alone_makes_azure_the_default_provider_and_no_emulator() -> None:
    values = _values(AZURE_OPENAI_ENDPOINT="https://res.openai.azure.com", AZURE_OPENAI_API_KEY="k" * 32)
    assert (values["emulator"], values["provider"]) == (False, "azure")
    values = _values(AZURE_OPENAI_ENDPOINT="https://res.openai.azure.com", AZURE_OPENAI_AD_TOKEN="a.b.c",
                     OPENAI_API_KEY="sk-test-not-real")
    assert (values["emulator"], values["provider"]) == (False, "openai")  # both: OpenAI unless told
    assert _values()["provider"] == "openai"


def test_an_azure_setup_that_cannot_work_stops_start_up_naming_what_is_missing() -> None:
    cases = [
        ({"AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com"}, "AZURE_OPENAI_API_KEY"),
        ({"VOICE_PROVIDER": "azure", "OPENAI_API_KEY": "sk-test-not-real"}, "AZURE_OPENAI_ENDPOINT"),
        ({"VOICE_PROVIDER": "azure", "AZURE_OPENAI_API_KEY": "k" * 32}, "AZURE_OPENAI_ENDPOINT"),
        ({"VOICE_PROVIDER": "gemini"}, "VOICE_PROVIDER"),
        ({"AZURE_OPENAI_ENDPOINT": "http://res.openai.azure.com", "AZURE_OPENAI_API_KEY": "k" * 32},
         "AZURE_OPENAI_ENDPOINT"),
        ({"AZURE_OPENAI_ENDPOINT": "https://res.openai.azure.com/openai/deployments/x",
          "AZURE_OPENAI_API_KEY": "k" * 32}, "AZURE_OPENAI_ENDPOINT"),
        ({"AZURE_OPENAI_DEPLOYMENT": "no spaces"}, "AZURE_OPENAI_DEPLOYMENT"),
    ]
    for env, named in cases:
        result = _settings(**env)
        assert result.returncode != 0, f"{env} was accepted"
        assert "ImproperlyConfigured" in result.stderr and named in result.stderr, (env, result.stderr[-300:])


def test_with_no_credential_at_all_azure_is_emulated_too() -> None:
    assert _values(VOICE_PROVIDER="azure")["emulator"] is True


def test_database_url_switches_to_postgresql() -> None:
    values = _values(DATABASE_URL="postgres://postgres@127.0.0.1:5432/voice")
    assert values["engine"] == "django.db.backends.postgresql"
    assert values["db_name"] == "voice"


def test_redis_url_switches_to_the_redis_channel_layer() -> None:
    values = _values(REDIS_URL="redis://127.0.0.1:6379/2")
    assert values["layer"] == "channels_redis.core.RedisChannelLayer"
    [host] = values["layer_hosts"]
    assert host["address"] == "redis://127.0.0.1:6379/2"
    assert host["socket_timeout"] == 15.0  # outlasts channels_redis' 5 s blocking read (see settings.py)


def test_debug_off_without_a_secret_key_is_refused() -> None:
    result = _settings(DJANGO_DEBUG="0")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_malformed_values_fail_at_start_up_naming_the_variable() -> None:
    cases = {
        "DJANGO_DEBUG": "maybe",
        "REDIS_URL": "localhost:6379",
        "REDIS_SOCKET_TIMEOUT_SECONDS": "5",
        "OPENAI_BASE_URL": "api.openai.com/v1",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "voice.example.com",
        "VOICE_MAX_FRAME_BYTES": "lots",
        "DATABASE_URL": "nosuchdb://x/y",
    }
    for name, value in cases.items():
        result = _settings(**{name: value})
        assert result.returncode != 0, f"{name}={value!r} was accepted"
        assert "ImproperlyConfigured" in result.stderr, result.stderr
        assert name in result.stderr, f"the error for {name} does not name it: {result.stderr[-300:]}"


def test_production_values_pass_the_deploy_check() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=_clean_env(**PRODUCTION), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_migrations_are_in_step_with_the_models() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT, env=_clean_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
