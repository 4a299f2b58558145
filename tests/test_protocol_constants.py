"""The protocol's constants are written once per language: voice/protocol.py for the server and
static/voice/protocol.js for the page. These tests keep the two equal, and the pages' URLs coming from
their views (the socket routes the server really serves)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.conftest import IN_CI
from voice import live, protocol
from voice.realtime import webrtc
from voice.routing import websocket_urlpatterns

STATIC = Path(settings.BASE_DIR) / "static" / "voice"


def _import_in_node(module: str, expression: str) -> Any:
    """What ``expression`` gives once ``module`` (a file of static/voice) is imported as ``m`` by Node."""
    node = shutil.which("node")
    if node is None:
        message = "node is needed to read the page's ES modules (Debian package nodejs, with npm)"
        if IN_CI:
            pytest.fail(f"CI: {message}", pytrace=False)
        pytest.skip(message)
    url = json.dumps((STATIC / module).as_uri())
    script = f"const m = await import({url}); console.log(JSON.stringify({expression}));"
    done = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_page_and_the_server_name_the_same_close_codes() -> None:
    assert _import_in_node("protocol.js", "m.CLOSE") == protocol.CLOSE_CODES
    assert protocol.CLOSE_CODES["NOT_LOGGED_IN"] == 4401 and len(set(protocol.CLOSE_CODES.values())) == len(
        protocol.CLOSE_CODES)


def test_the_page_and_the_server_speak_the_same_protocol_versions() -> None:
    versions = _import_in_node("protocol.js", "[m.PROTOCOL_VERSION, m.SERVER_PROTOCOL_VERSION]")
    assert versions == [webrtc.PROTOCOL_VERSION, live.PROTOCOL_VERSION]


def test_the_call_ends_for_good_only_on_close_codes_of_the_protocol() -> None:
    final = _import_in_node("realtime-client.js", "Object.keys(m.CLOSE_CODES).map(Number)")
    assert final and set(final) <= set(protocol.CLOSE_CODES.values())
    # A restart or a busy call is resumed, never final.
    assert protocol.CLOSE_SERVICE_RESTART not in final and protocol.CLOSE_TRY_AGAIN_LATER not in final


def test_the_socket_paths_the_pages_get_are_the_routes_served() -> None:
    routes = {str(pattern.pattern) for pattern in websocket_urlpatterns}
    assert routes == {protocol.VOICE_SOCKET_PATH, protocol.DASHBOARD_SOCKET_PATH}
