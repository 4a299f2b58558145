"""Credentials of remote MCP servers: from the server's environment into the call, and nowhere else.

A config names an environment variable (``VOICE_MCP_...``), never holds the token. The token is added to
the session only in the request that the server itself sends to OpenAI. Where the browser holds the call
(relay mode) it could see the session OpenAI echoes on its data channel, so there a config that needs a
credential does not start (``voice.sessions.start_session``). The prefix keeps an operator from pointing
an MCP server at any other secret of the process (the OpenAI key, the database URL).
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

from voice.models import VoiceConfig

logger = logging.getLogger(__name__)

ENV_PREFIX = "VOICE_MCP_"


def credential(config: VoiceConfig) -> str | None:
    """The token named by the config, or None (no MCP credential, or the variable is unset: logged)."""
    name = config.mcp_credential_env
    if not name:
        return None
    if not name.startswith(ENV_PREFIX):  # the form refuses this; a row written otherwise must not leak
        logger.error("Config %s names %s as its MCP credential; only %s* variables are used", config.pk, name,
                     ENV_PREFIX)
        return None
    value = os.environ.get(name, "").strip()
    if not value:
        logger.error("Config %s: environment variable %s is not set; its MCP server gets no credential",
                     config.pk, name)
        return None
    return value


def with_credentials(session: dict[str, Any], config: VoiceConfig | None) -> dict[str, Any]:
    """A copy of ``session`` whose MCP tool carries the config's token: only for a request to OpenAI."""
    token = credential(config) if config is not None else None
    if token is None:
        return session
    result = copy.deepcopy(session)
    for tool in result.get("tools") or []:
        if tool.get("type") == "mcp" and tool.get("server_label") == config.mcp_server_label:  # type: ignore[union-attr]
            tool["authorization"] = token
    return result
