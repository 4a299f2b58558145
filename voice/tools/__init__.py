"""The registry of built-in tools operators may enable on a voice config (``VoiceConfig.tools`` holds
their names).

The registry knows tools only as ``voice.agent.Tool`` values; their implementations live in
``voice.tools.builtin``, which registers them when the voice app is ready (``voice.apps``). So the models,
which validate and describe a config's tools, import this module, and the implementations import the
models, without either importing the other.
"""

from __future__ import annotations

from voice.agent import Tool

BUILTIN_TOOLS: dict[str, Tool] = {}


def register(tool: Tool) -> Tool:
    """Make ``tool`` available to voice configs under its name (once: a second tool of that name is a bug)."""
    if tool.name in BUILTIN_TOOLS:
        raise ValueError(f"A tool named {tool.name!r} is already registered.")
    BUILTIN_TOOLS[tool.name] = tool
    return tool


def tool_names() -> list[str]:
    """Names of the built-in tools, sorted (``VoiceConfig.tools`` is validated against these)."""
    return sorted(BUILTIN_TOOLS)


def get_tool(name: str) -> Tool:
    """The built-in tool called ``name``; ``KeyError`` naming the available ones if there is none."""
    try:
        return BUILTIN_TOOLS[name]
    except KeyError:
        raise KeyError(f"Unknown tool {name!r}; available: {', '.join(tool_names())}") from None


__all__ = ["BUILTIN_TOOLS", "get_tool", "register", "tool_names"]
