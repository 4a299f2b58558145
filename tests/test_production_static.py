"""The production command serves the site's static files, as the Dockerfile and compose file run it.

With DJANGO_DEBUG=0 the documented daphne command used to answer 404 for /static/voice/chat.js and the
admin's CSS: the chat page had no JavaScript. No Docker engine runs here, so this test reads the
commands out of the Dockerfile (collectstatic at build time, the CMD) and docker-compose.yml (the web
service's command, environment and health check) and runs exactly those, with only what the machine
forces changed: the bind address (loopback) and port (a free one), and the services the compose file
names (a temporary SQLite file instead of its PostgreSQL, the in-memory layer instead of its Redis).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
ONE_YEAR = 365 * 24 * 3600


def _dockerfile_collectstatic() -> tuple[dict[str, str], list[str]]:
    """The environment and argv of the Dockerfile's collectstatic step."""
    [line] = [line for line in DOCKERFILE.splitlines() if line.startswith("RUN ") and "collectstatic" in line]
    words = shlex.split(line.removeprefix("RUN "))
    env = {}
    while "=" in words[0] and not words[0].startswith("-"):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words


def _dockerfile_cmd() -> list[str]:
    [line] = [line for line in DOCKERFILE.splitlines() if line.startswith("CMD ")]
    return json.loads(line.removeprefix("CMD "))


def _compose_steps() -> list[list[str]]:
    """The web service's command: `sh -c "a && b && c"`, as argv lists."""
    command = " ".join(COMPOSE["services"]["web"]["command"].split())
    script = shlex.split(command)
    assert script[:2] == ["sh", "-c"], command
    return [shlex.split(step) for step in script[2].split("&&")]


def _resolve(value: str, given: dict[str, str]) -> str:
    """Compose's ${VAR:-default} and ${VAR:?message}, with `given` standing in for the operator's .env."""
    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if name in given:
            return given[name]
        if op == ":-":
            return rest
        raise AssertionError(f"compose needs {name} ({rest}); give the test a value for it")
    return re.sub(r"\$\{(\w+)(:-|:\?)([^}]*)\}", one, value)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _production_env(tmp_path: Path) -> dict[str, str]:
    """Compose's web environment, resolved, minus the services this machine replaces."""
    operator = {"DJANGO_SECRET_KEY": "t" * 30 + "-production-test-secret-key-5f4e3d2c1b",
                "OPENAI_API_KEY": "sk-production-test-not-real"}
    compose_env = {name: _resolve(str(value), operator)
                   for name, value in COMPOSE["services"]["web"]["environment"].items()}
    assert compose_env["DJANGO_DEBUG"] == "0"
    for service_url in ("DATABASE_URL", "REDIS_URL"):  # postgres:5432 and redis:6379 exist only in compose
        compose_env.pop(service_url)
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "OPENAI_", "REDIS_", "DATABASE_", "SQLITE_", "REALTIME_"))}
    return {**base, **compose_env, "SQLITE_PATH": str(tmp_path / "production.sqlite3"),
            "DJANGO_STATIC_ROOT": str(tmp_path / "staticfiles"), "PYTHONUNBUFFERED": "1"}


def _run(argv: list[str], env: dict[str, str]) -> None:
    if argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    # Behind the production proxy every request arrives as HTTPS (X-Forwarded-Proto, SECURE_PROXY_SSL_HEADER).
    request = urllib.request.Request(url, headers={"X-Forwarded-Proto": "https", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


@pytest.fixture(scope="module")
def production_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp_path = tmp_path_factory.mktemp("production")
    env = _production_env(tmp_path)
    build_env, collectstatic = _dockerfile_collectstatic()
    # The image is built first: collectstatic with the Dockerfile's own build-time environment.
    _run(collectstatic, {**env, **build_env})
    *setup, serve = _compose_steps()
    assert serve == _dockerfile_cmd(), "compose and the Dockerfile must start the same server"
    for step in setup:
        _run(step, env)
    port = _free_port()
    argv = list(serve)
    argv[argv.index("-b") + 1] = "127.0.0.1"  # the container binds 0.0.0.0; tests stay on loopback
    argv[argv.index("-p") + 1] = str(port)
    argv[0] = str(Path(sys.executable).with_name("daphne"))
    log = (tmp_path / "daphne.log").open("wb")
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "daphne.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "daphne did not start"
            time.sleep(0.2)
        yield {"base": base, "env": env, "port": port, "log": tmp_path / "daphne.log"}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def _logged_in_cookie(env: dict[str, str]) -> str:
    code = ("from django.contrib.auth import get_user_model; from importlib import import_module;"
            "from django.conf import settings;"
            "user = get_user_model().objects.create_user('static-tester', password='x-pass-2026');"
            "store = import_module(settings.SESSION_ENGINE).SessionStore();"
            "store['_auth_user_id'] = str(user.pk);"
            "store['_auth_user_backend'] = 'django.contrib.auth.backends.ModelBackend';"
            "store['_auth_user_hash'] = user.get_session_auth_hash(); store.save(); print(store.session_key)")
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return f"sessionid={result.stdout.strip().splitlines()[-1]}"


def _assert_long_lived(base: str, path: str) -> bytes:
    status, headers, body = _get(base + path)
    assert status == 200, f"{path}: {status}"
    cache = headers.get("cache-control", "")
    assert "immutable" in cache, f"{path}: {cache!r}"
    max_age = int(re.search(r"max-age=(\d+)", cache).group(1))  # type: ignore[union-attr]
    assert max_age >= ONE_YEAR, f"{path}: {cache!r}"
    status, headers, _ = _get(base + path, {"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("content-encoding") == "gzip", f"{path} is not served compressed"
    return body


def test_the_chat_pages_javascript_and_css_load_with_long_lived_cache_headers(production_site: dict[str, Any]) -> None:
    base = production_site["base"]
    status, _, html = _get(f"{base}/voice/", {"Cookie": _logged_in_cookie(production_site["env"])})
    assert status == 200, html[:500]
    page = html.decode()
    scripts = re.findall(r'<script type="module" src="([^"]+)"', page)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page)
    assert [Path(s).name.split(".")[0] for s in scripts] == ["chat"]
    assert {Path(s).name.split(".")[0] for s in styles} == {"voice", "chat"}
    for path in scripts + styles:
        assert re.search(r"\.[0-9a-f]{12}\.(js|css)$", path), f"{path} has no content hash"
        body = _assert_long_lived(base, path)
    # chat.js imports the client by its hashed name too, so a release never mixes versions.
    chat = _get(base + scripts[0])[2].decode()
    [client] = re.findall(r'from "\./(realtime-client\.[0-9a-f]{12}\.js)"', chat)
    body = _assert_long_lived(base, f"/static/voice/{client}")
    assert b"class RealtimeVoiceClient" in body


def test_the_admins_css_loads_with_long_lived_cache_headers(production_site: dict[str, Any]) -> None:
    base = production_site["base"]
    status, _, html = _get(f"{base}/admin/login/")
    assert status == 200
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html.decode())
    [base_css] = [s for s in styles if "/admin/css/base." in s]
    assert b"body" in _assert_long_lived(base, base_css)


def test_the_compose_health_check_passes_against_the_production_command(production_site: dict[str, Any]) -> None:
    test = COMPOSE["services"]["web"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    argv = [sys.executable, *test[2:]]
    argv = [a.replace("127.0.0.1:8000", f"127.0.0.1:{production_site['port']}") for a in argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr[-1500:]


def test_nothing_went_wrong_in_the_servers_log(production_site: dict[str, Any]) -> None:
    log = production_site["log"].read_text(errors="replace")
    assert "Traceback" not in log and "Warning" not in log, log[-3000:]


def test_the_development_server_still_serves_static_files(tmp_path: Path) -> None:
    """`make run` (debug, runserver) serves the source files, as before."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "REDIS_"))}
    env.update({"DJANGO_DEBUG": "1", "SQLITE_PATH": str(tmp_path / "dev.sqlite3"), "PYTHONUNBUFFERED": "1"})
    proc = subprocess.Popen([sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _, body = _get(f"http://127.0.0.1:{port}/static/voice/chat.js")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "runserver did not start"
                time.sleep(0.2)
        assert status == 200 and b"RealtimeVoiceClient" in body
        assert _get(f"http://127.0.0.1:{port}/static/admin/css/base.css")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
