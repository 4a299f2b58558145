"""No Docker engine runs here, so the compose file is checked against the settings it must feed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_web_redis_and_postgres_with_healthchecks() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"web", "redis", "postgres"}
    for name in services:
        assert "healthcheck" in services[name], name


def test_web_waits_for_healthy_redis_and_postgres() -> None:
    depends = COMPOSE["services"]["web"]["depends_on"]
    assert depends == {"postgres": {"condition": "service_healthy"}, "redis": {"condition": "service_healthy"}}


def test_web_runs_daphne_on_port_8000_after_migrating() -> None:
    web = COMPOSE["services"]["web"]
    command = " ".join(web["command"].split())
    assert command.index("migrate") < command.index("daphne")
    assert "end_stale_sessions" in command
    assert "-b 0.0.0.0 -p 8000" in command
    assert "realtime_site.asgi:application" in command
    assert "8000:8000" in web["ports"]


def test_web_environment_points_at_the_compose_services_and_parses_as_settings() -> None:
    env = COMPOSE["services"]["web"]["environment"]
    pg = COMPOSE["services"]["postgres"]["environment"]
    assert env["DATABASE_URL"] == f"postgres://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    assert env["DJANGO_DEBUG"] == "0"
    # The same values must be accepted by settings.py: resolve compose's ${VAR:-default} the way compose does.
    resolved = {
        "DJANGO_DEBUG": env["DJANGO_DEBUG"], "DJANGO_SECRET_KEY": "s" * 60, "DATABASE_URL": env["DATABASE_URL"],
        "REDIS_URL": env["REDIS_URL"], "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://localhost", "OPENAI_API_KEY": "sk-compose-test",
        "OPENAI_BASE_URL": "https://api.openai.com/v1",
    }
    assert set(resolved) == set(env)
    code = (
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['HOST'],"
        " s.CHANNEL_LAYERS['default']['BACKEND'], s.DEBUG)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "realtime_site.settings",
                                 **resolved})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.postgresql", "postgres",
                                     "channels_redis.core.RedisChannelLayer", "False"]


def test_the_dockerfile_serves_the_same_asgi_application() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "realtime_site.asgi:application" in dockerfile
    assert "EXPOSE 8000" in dockerfile
