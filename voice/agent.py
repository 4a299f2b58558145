"""VoiceAgent: one realtime conversation with tools and observers; ToolObserver runs the tools.

No Django here (the agent must not care which client feeds it events, nor where they are recorded).
Sync tools run through ``asgiref.sync.sync_to_async(thread_sensitive=True)``, so a tool may use the
Django ORM without this module importing Django (``uses_database=False``: the worker pool; ``inline=True``:
on the event loop, for pure tools that are always quick).

Observers
---------
An observer is anything that subclasses ``Observer`` (the Recorder, the Broadcaster, ``ToolObserver``).
``VoiceAgent.run()`` calls, in this order:

- ``await observer.start(agent)`` once, after the client connected and the session update was sent. An
  observer whose ``start`` raises is logged and left out of the run.
- ``await observer.on_event(event)`` for every event, in arrival order, one observer after the other.
  It must return quickly (queue work, spawn a task): a slow observer delays the others. An exception is
  logged and the run goes on.
- ``await observer.on_tool_started(call_id, name, arguments)`` and
  ``await observer.on_tool_finished(call_id, name, output, status, duration)`` around every tool call
  (``status`` is one of ``ToolCallStatus``; ``duration`` in seconds). A started call always finishes,
  even when the session ends first (status ``failed``). These may arrive before or after the
  ``FunctionCall`` event itself reaches a later observer.
- ``await observer.close()`` once when the run ends: tool observers first (cancelling unfinished calls
  sends their ``on_tool_finished`` to the others, still open), then the rest in the order given.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from asgiref.sync import sync_to_async
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from voice.realtime.client import RealtimeClientProtocol, get_client
from voice.realtime.events import FunctionCall, InvalidFrame, RealtimeEvent

_module_logger = logging.getLogger(__name__)

DEFAULT_TOOL_TIMEOUT_SECONDS = 30.0
# The values match voice.models.ToolCall.Status (except "running", which the Recorder sets itself).
ToolCallStatus = Literal["succeeded", "failed", "timed_out", "rejected"]
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ToolContext:
    """Who is calling. Filled by the server from the authenticated session, never from the model or the
    browser: a tool parameter annotated ``ToolContext`` is left out of the JSON schema and cannot be sent."""

    user_id: int | None
    username: str = ""
    session_id: str = ""


class ToolError(Exception):
    """Raise from a tool to tell the model what went wrong; the message is passed on as is.

    Any other exception is reported to the model only by its type, since its text may hold internals.
    """


# --- tools ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    """A function the model may call, with its argument model (from the type hints) and GA definition."""

    name: str
    description: str
    function: Callable[..., Any]
    arguments_model: type[BaseModel]
    context_parameter: str | None = None
    timeout: float | None = None
    is_async: bool = field(default=False)
    # A sync tool that never touches the ORM runs on the worker pool instead of asgiref's one sync thread,
    # where it would wait behind the Recorder's batch writes.
    uses_database: bool = True
    # A sync tool that is pure and takes well under a millisecond whatever its arguments (the clock, the
    # bounded calculator) runs on the event loop itself. A hop to any thread and back costs two thread
    # wake-ups: on a busy machine that was the whole p99 of a tool call's turnaround (benchmarks/README.md,
    # "Server mode"). The price: nothing can interrupt it, so its own bounds are its timeout.
    inline: bool = False

    def parameters_schema(self) -> dict[str, Any]:
        return _without_titles(self.arguments_model.model_json_schema())

    def definition(self) -> dict[str, Any]:
        """The GA function tool for ``session.tools``."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters_schema(),
        }

    def parse_arguments(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Validated keyword arguments; raises ``pydantic.ValidationError``."""
        parsed = self.arguments_model.model_validate(dict(arguments))
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}

    async def invoke(self, kwargs: dict[str, Any], context: ToolContext | None) -> Any:
        """Run the tool with already validated arguments. Sync tools run off the event loop, unless inline."""
        if self.context_parameter is not None:
            kwargs = {**kwargs, self.context_parameter: context}
        if self.is_async:
            return await self.function(**kwargs)
        if self.inline:
            return self.function(**kwargs)
        # thread_sensitive=True: Django's ORM connections are per thread and cleaned up on that thread.
        # The cost: sync tools share one thread, so keep them short (the timeout cannot stop a thread).
        return await sync_to_async(self.function, thread_sensitive=self.uses_database)(**kwargs)


def make_tool(
    function: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    uses_database: bool = True,
    inline: bool = False,
) -> Tool:
    """Build a ``Tool`` from a typed function. Parameter descriptions may be given as
    ``Annotated[str, "what it is"]`` or ``Annotated[str, Field(description=...)]``. ``uses_database=False``
    (a sync tool that never uses the ORM) runs it on the worker pool rather than the ORM's one thread;
    ``inline=True`` (a sync tool that is pure and always quick) runs it on the event loop, no thread at all."""
    tool_name = name or function.__name__
    if not _TOOL_NAME.match(tool_name):
        raise ValueError(f"Tool name {tool_name!r} must be 1-64 letters, digits, '_' or '-'")
    is_async = inspect.iscoroutinefunction(function)
    if inline and is_async:
        raise ValueError(f"Tool {tool_name!r}: inline is for sync tools; an async tool runs on the loop already")
    hints = typing.get_type_hints(function, include_extras=True)
    fields: dict[str, Any] = {}
    context_parameter: str | None = None
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD, parameter.POSITIONAL_ONLY):
            raise TypeError(f"Tool {tool_name!r}: parameter {parameter.name!r} must be a plain named parameter")
        hint = hints.get(parameter.name, Any)
        if _is_context(hint):
            context_parameter = parameter.name
            continue
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (_with_descriptions(hint), default)
    arguments_model = create_model(
        f"{tool_name}_arguments",
        __config__=ConfigDict(extra="forbid", protected_namespaces=()),
        **fields,
    )
    return Tool(
        name=tool_name,
        description=description if description is not None else inspect.getdoc(function) or "",
        function=function,
        arguments_model=arguments_model,
        context_parameter=context_parameter,
        timeout=timeout,
        is_async=is_async,
        # An inline tool runs on the loop, where the ORM refuses to run: it cannot use the database.
        uses_database=uses_database and not inline,
        inline=inline,
    )


def _is_context(hint: Any) -> bool:
    if hint is ToolContext:
        return True
    if get_origin(hint) is Annotated:
        return _is_context(get_args(hint)[0])
    if get_origin(hint) in (Union, types.UnionType):
        return any(arg is ToolContext for arg in get_args(hint))
    return False


def _with_descriptions(hint: Any) -> Any:
    # AG2 style Annotated[str, "description"] -> a pydantic Field with that description.
    if get_origin(hint) is not Annotated:
        return hint
    base, *metadata = get_args(hint)
    converted = [Field(description=item) if isinstance(item, str) else item for item in metadata]
    return Annotated[(base, *converted)]


def _without_titles(schema: Any) -> Any:
    """Drop pydantic's generated "title"s (noise for the model), but not a property called "title"."""
    if isinstance(schema, list):
        return [_without_titles(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):
            cleaned[key] = {name: _without_titles(sub) for name, sub in value.items()}
        else:
            cleaned[key] = _without_titles(value)
    return cleaned


# --- observers ------------------------------------------------------------------------------------


class Observer:
    """Base class of everything that watches a VoiceAgent's events (see the module docstring)."""

    agent: VoiceAgent | None = None

    async def start(self, agent: VoiceAgent) -> None:
        self.agent = agent

    async def on_event(self, event: RealtimeEvent) -> None:
        """Called for every event; return quickly."""

    async def on_tool_started(self, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        """A tool call began (also for unknown tools and invalid arguments, which finish as rejected)."""

    async def on_tool_finished(
        self, call_id: str, name: str, output: str, status: ToolCallStatus, duration: float
    ) -> None:
        """A tool call ended; ``output`` is exactly what the model was sent."""

    async def close(self) -> None:
        """The run ended; flush and release."""


def tool_error_output(kind: str, message: str) -> str:
    """The JSON the model gets instead of a result: ``{"error": {"type": ..., "message": ...}}``."""
    return json.dumps({"error": {"type": kind, "message": message}}, ensure_ascii=False)


class ToolObserver(Observer):
    """Runs the agent's tools for ``FunctionCall`` events and always answers each call once.

    Each call is its own task, so a slow tool never delays other events. Answers: a string result as it
    is, any other result as JSON, or
    ``tool_error_output`` for an unknown tool, invalid arguments, a ``ToolError``, another exception, or
    a timeout (per tool, else ``default_timeout``). A call id seen twice is answered once.
    """

    def __init__(self, *, default_timeout: float = DEFAULT_TOOL_TIMEOUT_SECONDS) -> None:
        self.default_timeout = default_timeout
        self._tasks: set[asyncio.Task[None]] = set()
        self._seen_call_ids: set[str] = set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def on_event(self, event: RealtimeEvent) -> None:
        if isinstance(event, FunctionCall):
            self._spawn(event.call_id, event.name, event.arguments, problem=None)
        elif isinstance(event, InvalidFrame) and event.code == "invalid_function_arguments" and event.call_id:
            # The model waits for an answer even when its arguments were unreadable.
            self._spawn(
                event.call_id,
                event.name or "",
                {"_unparsed": event.excerpt},
                problem="The arguments are not a JSON object.",
            )

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, call_id: str, name: str, arguments: dict[str, Any], problem: str | None) -> None:
        if call_id in self._seen_call_ids:
            self._logger.warning("Ignoring a repeated call id %s (%s): it was already answered", call_id, name)
            return
        self._seen_call_ids.add(call_id)
        task = asyncio.create_task(self._answer(call_id, name, arguments, problem), name=f"tool-{call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def _logger(self) -> logging.Logger:
        return self.agent.logger if self.agent is not None else _module_logger

    async def _answer(self, call_id: str, name: str, arguments: dict[str, Any], problem: str | None) -> None:
        agent = self.agent
        assert agent is not None, "ToolObserver.start() was not called"
        loop = asyncio.get_running_loop()
        await agent.notify_tool_started(call_id, name, arguments)
        started = loop.time()
        try:
            output, status = await self._run(agent, name, arguments, problem)
        except asyncio.CancelledError:
            output = tool_error_output("cancelled", "The session ended before the tool finished.")
            await agent.notify_tool_finished(call_id, name, output, "failed", loop.time() - started)
            raise
        duration = loop.time() - started
        try:
            await agent.client.send_function_result(call_id, output)
        except Exception as exc:
            self._logger.warning("Could not send the result of %s (%s): %s", name, call_id, type(exc).__name__)
        await agent.notify_tool_finished(call_id, name, output, status, duration)

    async def _run(
        self, agent: VoiceAgent, name: str, arguments: dict[str, Any], problem: str | None
    ) -> tuple[str, ToolCallStatus]:
        tool = agent.tools.get(name)
        if tool is None:
            available = ", ".join(sorted(agent.tools)) or "none"
            return tool_error_output("unknown_tool", f"No tool named {name!r}. Available: {available}."), "rejected"
        if problem is not None:
            return tool_error_output("invalid_arguments", problem), "rejected"
        try:
            kwargs = tool.parse_arguments(arguments)
        except ValidationError as exc:
            return tool_error_output("invalid_arguments", _summarise(exc)), "rejected"
        if tool.context_parameter is not None and agent.context is None:
            return tool_error_output("no_user", f"{name} needs a signed-in user."), "rejected"
        timeout = tool.timeout or self.default_timeout
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                result = await tool.invoke(kwargs, agent.context)
        except TimeoutError:
            if deadline.expired():
                return tool_error_output("timeout", f"{name} did not finish within {timeout:g} s."), "timed_out"
            return self._failed(name, TimeoutError())
        except ToolError as exc:
            return tool_error_output("tool_error", str(exc)), "failed"
        except Exception as exc:
            return self._failed(name, exc)
        try:
            return _to_json(result), "succeeded"
        except (TypeError, ValueError) as exc:
            return self._failed(name, exc)

    def _failed(self, name: str, exc: BaseException) -> tuple[str, ToolCallStatus]:
        self._logger.error("Tool %s failed", name, exc_info=exc)
        return tool_error_output("tool_failed", f"{name} failed ({type(exc).__name__})."), "failed"


def _summarise(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'arguments'}: "
        + ("unexpected argument" if error["type"] == "extra_forbidden" else error["msg"])
        for error in exc.errors()
    )


def _to_json(result: Any) -> str:
    # A string is the tool's answer as it stands (the seed sent it unchanged); encoding it again would
    # hand the model a quoted, escaped copy ("\"12:00\"") instead.
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    return json.dumps(result, ensure_ascii=False, default=str)


# --- the agent ------------------------------------------------------------------------------------


class VoiceAgent:
    """One realtime conversation: a client, instructions, tools and observers.

    Give either ``client`` or ``llm_config`` plus ``websocket`` (the client is then chosen by
    ``voice.realtime.get_client``). A ``ToolObserver`` is added first unless one is given.
    ``context`` is who the tools act for (see ``ToolContext``).
    """

    def __init__(
        self,
        *,
        client: RealtimeClientProtocol | None = None,
        llm_config: dict[str, Any] | None = None,
        websocket: Any = None,
        system_message: str | None = None,
        tools: Iterable[Tool | Callable[..., Any]] = (),
        observers: Iterable[Observer] = (),
        context: ToolContext | None = None,
        logger: logging.Logger | None = None,
        tool_timeout: float = DEFAULT_TOOL_TIMEOUT_SECONDS,
        hosted_tools: Iterable[dict[str, Any]] = (),
    ) -> None:
        self.logger = logger or _module_logger
        # Tools OpenAI runs itself (remote MCP servers). Declared with ours in the session update, which
        # replaces the session's whole tool list: leaving them out would switch them off.
        self.hosted_tools: list[dict[str, Any]] = [dict(tool) for tool in hosted_tools]
        if client is None:
            if llm_config is None or websocket is None:
                raise ValueError("VoiceAgent needs a client, or an llm_config and a websocket")
            client = get_client(llm_config, self.logger, websocket=websocket)
        elif llm_config is not None or websocket is not None:
            raise ValueError("Give VoiceAgent a client or an llm_config and websocket, not both")
        self.client = client
        self.system_message = system_message
        self.context = context
        self.tools: dict[str, Tool] = {}
        for item in tools:
            self.add_tool(item)
        given = list(observers)
        if not any(isinstance(observer, ToolObserver) for observer in given):
            given.insert(0, ToolObserver(default_timeout=tool_timeout))
        self.observers: list[Observer] = given
        self._active_observers: list[Observer] = []
        self._main: asyncio.Task[None] | None = None
        self._stop_requested = False

    # --- tools ------------------------------------------------------------------------------------

    def add_tool(self, tool: Tool | Callable[..., Any]) -> Tool:
        built = tool if isinstance(tool, Tool) else make_tool(tool)
        if built.name in self.tools:
            raise ValueError(f"A tool named {built.name!r} is already registered")
        self.tools[built.name] = built
        return built

    def register_realtime_function(
        self, *, name: str | None = None, description: str | None = None, timeout: float | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register a sync or async typed function as a tool. Register before ``run()``."""

        def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
            self.add_tool(make_tool(function, name=name, description=description, timeout=timeout))
            return function

        return decorate

    def session_options(self) -> dict[str, Any]:
        """What ``run()`` sends with ``session_update``: the instructions (if any) and the tools.

        Tools are always sent, even none: the model may only call what this agent can run.
        """
        options: dict[str, Any] = {
            "tools": [tool.definition() for tool in self.tools.values()] + [dict(t) for t in self.hosted_tools]
        }
        if self.tools or self.hosted_tools:
            options["tool_choice"] = "auto"
        if self.system_message is not None:
            options["instructions"] = self.system_message
        return options

    # --- running ----------------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._main is not None and not self._main.done()

    async def run(self) -> None:
        """Connect, send the session update, start the observers and feed them events until the socket
        closes or ``stop()`` is called. Connection failures propagate (the client already told the
        browser with ``ag2.error``)."""
        if self._main is not None:
            raise RuntimeError("VoiceAgent.run() is already running")
        self._stop_requested = False
        self._main = asyncio.create_task(self._run_session(), name="voice-agent")
        try:
            await self._main
        except asyncio.CancelledError:
            current = asyncio.current_task()
            # Cancelled by stop() (not by someone cancelling run() itself): a normal end.
            if self._stop_requested and current is not None and not current.cancelling():
                return
            raise
        finally:
            self._main = None

    async def stop(self) -> None:
        """End ``run()`` and wait until everything it started has finished."""
        main = self._main
        if main is None or main.done():
            return
        self._stop_requested = True
        main.cancel()
        if asyncio.current_task() is not main:
            await asyncio.wait({main})

    async def _run_session(self) -> None:
        started: list[Observer] = []
        try:
            async with self.client.connect():
                await self.client.session_update(self.session_options())
                for observer in self.observers:
                    try:
                        await observer.start(self)
                    except Exception:
                        self.logger.exception("Observer %s failed to start; it is left out", _name(observer))
                    else:
                        started.append(observer)
                self._active_observers = started
                async with aclosing(self.client.read_events()) as events:
                    async for event in events:
                        await self._dispatch(event)
        finally:
            # Tool observers close first: cancelling their calls sends on_tool_finished to the others,
            # which must still be open to record it. A closed observer gets no more hooks.
            ordering = sorted(started, key=lambda observer: not isinstance(observer, ToolObserver))
            for observer in ordering:
                try:
                    await observer.close()
                except Exception:
                    self.logger.exception("Observer %s failed to close", _name(observer))
                self._active_observers = [active for active in self._active_observers if active is not observer]
            self._active_observers = []

    async def _dispatch(self, event: RealtimeEvent) -> None:
        for observer in self._active_observers:
            try:
                await observer.on_event(event)
            except Exception:
                self.logger.exception("Observer %s failed on %s; the session goes on", _name(observer), event.type)

    async def _notify(self, hook: Callable[[Observer], Awaitable[None]], what: str) -> None:
        for observer in self._active_observers:
            try:
                await hook(observer)
            except Exception:
                self.logger.exception("Observer %s failed in %s", _name(observer), what)

    async def notify_tool_started(self, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        await self._notify(lambda o: o.on_tool_started(call_id, name, arguments), "on_tool_started")

    async def notify_tool_finished(
        self, call_id: str, name: str, output: str, status: ToolCallStatus, duration: float
    ) -> None:
        await self._notify(lambda o: o.on_tool_finished(call_id, name, output, status, duration), "on_tool_finished")


def _name(observer: Observer) -> str:
    return type(observer).__name__


__all__ = [
    "DEFAULT_TOOL_TIMEOUT_SECONDS",
    "Observer",
    "Tool",
    "ToolCallStatus",
    "ToolContext",
    "ToolError",
    "ToolObserver",
    "VoiceAgent",
    "make_tool",
    "tool_error_output",
]
