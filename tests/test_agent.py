"""VoiceAgent and ToolObserver over a fake websocket: tools, observers, run and stop."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import httpx
import pytest
import respx
from pydantic import BaseModel

from voice.agent import Observer, Tool, ToolContext, ToolError, ToolObserver, VoiceAgent, make_tool
from voice.realtime import OpenAIRealtimeWebRTCClient, RealtimeAuthError
from voice.realtime.events import FunctionCall, RealtimeEvent, validate_client_event

BASE = "https://api.test/v1"
MINT_URL = f"{BASE}/realtime/client_secrets"
LOGGER = logging.getLogger("tests.agent")
MINTED = {"value": "ek_1", "expires_at": 1767225600, "session": {"type": "realtime", "model": "gpt-realtime"}}
CONTEXT = ToolContext(user_id=7, username="alice", session_id="6f1c8a4e-1d7b-4a8e-9a43-5b7f3f0b8c21")


class FakeWebSocket:
    """send_json + iter_text; every frame sent is checked against the client-event schemas."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._incoming: asyncio.Queue[str | None] = asyncio.Queue()

    async def send_json(self, data: dict[str, Any]) -> None:
        validate_client_event(data)
        self.sent.append(json.loads(json.dumps(data)))

    def feed(self, *frames: dict[str, Any] | str) -> None:
        for frame in frames:
            self._incoming.put_nowait(frame if isinstance(frame, str) else json.dumps(frame))

    def close(self) -> None:
        self._incoming.put_nowait(None)

    async def iter_text(self) -> AsyncIterator[str]:
        while (frame := await self._incoming.get()) is not None:
            yield frame

    def outputs(self) -> dict[str, Any]:
        """call_id -> decoded function_call_output (a tool's plain string result stays the string)."""
        decoded: dict[str, Any] = {}
        for frame in self.sent:
            if frame["type"] == "conversation.item.create" and frame["item"]["type"] == "function_call_output":
                output = frame["item"]["output"]
                try:
                    decoded[frame["item"]["call_id"]] = json.loads(output)
                except ValueError:
                    decoded[frame["item"]["call_id"]] = output
        return decoded


def function_call(call_id: str, name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {
        "type": "response.output_item.done",
        "response_id": "resp_1",
        "output_index": 0,
        "item": {"id": f"item_{call_id}", "type": "function_call", "status": "completed", "name": name,
                 "call_id": call_id, "arguments": raw},
    }  # fmt: skip


async def eventually(condition: Callable[[], bool], what: str = "condition") -> None:
    """Wait (bounded) for something another task or thread does; failing only on a generous limit."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    pytest.fail(f"timed out waiting for {what}")


class RecordingObserver(Observer):
    def __init__(self) -> None:
        self.events: list[RealtimeEvent] = []
        self.tool_calls: list[tuple[Any, ...]] = []
        self.started = self.closed = False

    async def start(self, agent: VoiceAgent) -> None:
        await super().start(agent)
        self.started = True

    async def on_event(self, event: RealtimeEvent) -> None:
        self.events.append(event)

    async def on_tool_started(self, call_id: str, name: str, arguments: dict[str, Any]) -> None:
        self.tool_calls.append(("started", call_id, name, arguments))

    async def on_tool_finished(self, call_id: str, name: str, output: str, status: str, duration: float) -> None:
        assert duration >= 0
        self.tool_calls.append(("finished", call_id, name, status))

    async def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def openai() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        router.post(MINT_URL).mock(return_value=httpx.Response(200, json=MINTED))
        yield router


@pytest.fixture
def websocket() -> FakeWebSocket:
    return FakeWebSocket()


@pytest.fixture
def recorder() -> RecordingObserver:
    return RecordingObserver()


def make_agent(websocket: FakeWebSocket, **kwargs: Any) -> VoiceAgent:
    client = OpenAIRealtimeWebRTCClient(
        llm_config={"config_list": [{"model": "gpt-realtime", "api_key": "sk-test", "base_url": BASE}]},
        websocket=websocket,
        logger=LOGGER,
    )
    kwargs.setdefault("context", CONTEXT)
    return VoiceAgent(client=client, logger=LOGGER, **kwargs)


async def start(agent: VoiceAgent, websocket: FakeWebSocket) -> asyncio.Task[None]:
    task = asyncio.create_task(agent.run())
    await eventually(lambda: any(f["type"] == "session.update" and "tools" in f["session"] for f in websocket.sent),
                     "the session update")  # fmt: skip
    return task


async def finish(agent: VoiceAgent, task: asyncio.Task[None]) -> None:
    await agent.stop()
    await task
    assert asyncio.all_tasks() == {asyncio.current_task()}


def answered_in_order(websocket: FakeWebSocket, call_id: str) -> bool:
    """The call's function_call_output is immediately followed by response.create."""
    for index, frame in enumerate(websocket.sent):
        if frame["type"] == "conversation.item.create" and frame["item"].get("call_id") == call_id:
            return websocket.sent[index + 1 : index + 2] == [{"type": "response.create"}]
    return False


# --- building tools ---------------------------------------------------------------------------------


def test_register_realtime_function_builds_a_ga_tool_from_type_hints_and_docstring(
    websocket: FakeWebSocket,
) -> None:
    agent = make_agent(websocket)

    @agent.register_realtime_function(name="weather")
    def get_weather(city: Annotated[str, "The city"], days: int = 1, context: ToolContext | None = None) -> str:
        """Forecast for a city."""
        return "sunny"

    assert get_weather("Paris") == "sunny"  # the decorator returns the function unchanged
    assert agent.tools["weather"].definition() == {
        "type": "function",
        "name": "weather",
        "description": "Forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city"},
                "days": {"type": "integer", "default": 1},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    }


def test_a_description_argument_overrides_the_docstring_and_names_must_be_unique(websocket: FakeWebSocket) -> None:
    agent = make_agent(websocket)

    @agent.register_realtime_function(description="Says hi")
    async def hello() -> str:
        """Ignored."""
        return "hi"

    assert agent.tools["hello"].description == "Says hi"
    assert agent.tools["hello"].is_async
    with pytest.raises(ValueError, match="already registered"):
        agent.add_tool(hello)


class Address(BaseModel):
    street: str


def test_nested_models_and_a_property_called_title_keep_their_schema() -> None:
    def post(title: str, address: Address) -> str:
        return title

    schema = make_tool(post).parameters_schema()

    assert set(schema["properties"]) == {"title", "address"}
    assert "title" not in schema["$defs"]["Address"]


@pytest.mark.parametrize("name", ["has space", "x" * 65, ""])
def test_tool_names_must_suit_the_api(name: str) -> None:
    with pytest.raises(ValueError, match="Tool name"):
        make_tool(lambda: None, name=name)


def test_tools_without_plain_named_parameters_are_refused() -> None:
    def variadic(*args: int) -> int:
        return 0

    with pytest.raises(TypeError, match="plain named parameter"):
        make_tool(variadic)


def test_agent_needs_a_client_or_an_llm_config_and_websocket(websocket: FakeWebSocket) -> None:
    agent = VoiceAgent(llm_config={"config_list": [{"model": "gpt-realtime"}]}, websocket=websocket)

    assert isinstance(agent.client, OpenAIRealtimeWebRTCClient)
    assert isinstance(agent.observers[0], ToolObserver)
    with pytest.raises(ValueError, match="needs a client"):
        VoiceAgent()
    with pytest.raises(ValueError, match="not both"):
        VoiceAgent(client=agent.client, websocket=websocket)


# --- running ----------------------------------------------------------------------------------------


async def test_run_sends_instructions_and_tools_with_session_update(websocket: FakeWebSocket) -> None:
    def calculator(expression: str) -> str:
        """Math."""
        return expression

    agent = make_agent(websocket, system_message="Be brief.", tools=[calculator])
    task = await start(agent, websocket)

    assert [frame["type"] for frame in websocket.sent] == ["ag2.init", "session.update"]
    assert websocket.sent[1]["session"] == {
        "type": "realtime",
        "instructions": "Be brief.",
        "tools": [agent.tools["calculator"].definition()],
        "tool_choice": "auto",
    }
    await finish(agent, task)


async def test_without_tools_or_instructions_the_update_sends_an_empty_tool_list(websocket: FakeWebSocket) -> None:
    agent = make_agent(websocket)
    task = await start(agent, websocket)

    assert websocket.sent[1]["session"] == {"type": "realtime", "tools": []}
    await finish(agent, task)


async def test_a_sync_tool_answers_with_function_call_output_then_response_create(
    websocket: FakeWebSocket, recorder: RecordingObserver
) -> None:
    def add(a: int, b: int) -> dict[str, int]:
        return {"sum": a + b}

    agent = make_agent(websocket, tools=[add], observers=[recorder])
    task = await start(agent, websocket)

    websocket.feed(function_call("call_sync", "add", {"a": 2, "b": 3}))
    await eventually(lambda: "call_sync" in websocket.outputs(), "the answer")

    assert websocket.outputs()["call_sync"] == {"sum": 5}
    assert answered_in_order(websocket, "call_sync")
    await eventually(lambda: len(recorder.tool_calls) == 2, "the finished hook")
    assert recorder.tool_calls == [
        ("started", "call_sync", "add", {"a": 2, "b": 3}),
        ("finished", "call_sync", "add", "succeeded"),
    ]
    await finish(agent, task)


async def test_an_async_tool_answers_with_its_result(websocket: FakeWebSocket) -> None:
    agent = make_agent(websocket)

    @agent.register_realtime_function()
    async def shout(text: str) -> str:
        await asyncio.sleep(0)
        return text.upper()

    task = await start(agent, websocket)
    websocket.feed(function_call("call_async", "shout", {"text": "hi"}))
    await eventually(lambda: "call_async" in websocket.outputs())

    assert raw_outputs(websocket)["call_async"] == "HI"  # a string goes out as it is
    assert answered_in_order(websocket, "call_async")
    await finish(agent, task)


async def test_a_string_result_goes_out_as_it_is_not_encoded_again(websocket: FakeWebSocket) -> None:
    agent = make_agent(websocket)

    @agent.register_realtime_function()
    def weather(city: str) -> str:
        return '{"city": "Oslo", "sky": "clear"}' if city == "Oslo" else 'It is "sunny" in ' + city

    task = await start(agent, websocket)
    websocket.feed(function_call("call_json", "weather", {"city": "Oslo"}))
    websocket.feed(function_call("call_text", "weather", {"city": "Rome"}))
    await eventually(lambda: {"call_json", "call_text"} <= set(raw_outputs(websocket)))

    assert raw_outputs(websocket) == {
        "call_json": '{"city": "Oslo", "sky": "clear"}',
        "call_text": 'It is "sunny" in Rome',
    }
    await finish(agent, task)


def raw_outputs(websocket: FakeWebSocket) -> dict[str, str]:
    """call_id -> the function_call_output exactly as sent."""
    return {
        frame["item"]["call_id"]: frame["item"]["output"]
        for frame in websocket.sent
        if frame["type"] == "conversation.item.create" and frame["item"]["type"] == "function_call_output"
    }


async def test_a_failing_tool_is_answered_with_an_error_that_hides_internals(
    websocket: FakeWebSocket, recorder: RecordingObserver
) -> None:
    agent = make_agent(websocket, observers=[recorder])

    @agent.register_realtime_function()
    def explode() -> str:
        raise RuntimeError("database password is hunter2")

    @agent.register_realtime_function()
    def refuse() -> str:
        raise ToolError("That city does not exist.")

    task = await start(agent, websocket)
    websocket.feed(function_call("call_boom", "explode", {}), function_call("call_no", "refuse", {}))
    await eventually(lambda: {"call_boom", "call_no"} <= set(websocket.outputs()))

    assert websocket.outputs()["call_boom"] == {
        "error": {"type": "tool_failed", "message": "explode failed (RuntimeError)."}
    }
    assert websocket.outputs()["call_no"] == {"error": {"type": "tool_error", "message": "That city does not exist."}}
    assert answered_in_order(websocket, "call_boom") and answered_in_order(websocket, "call_no")
    await eventually(lambda: len(recorder.tool_calls) == 4)
    assert {call[3] for call in recorder.tool_calls if call[0] == "finished"} == {"failed"}
    await finish(agent, task)


async def test_a_slow_tool_does_not_delay_other_events_or_calls(
    websocket: FakeWebSocket, recorder: RecordingObserver
) -> None:
    release = asyncio.Event()
    agent = make_agent(websocket, observers=[recorder])

    @agent.register_realtime_function()
    async def slow() -> str:
        await release.wait()
        return "finally"

    @agent.register_realtime_function()
    async def fast() -> str:
        return "quick"

    task = await start(agent, websocket)
    websocket.feed(
        function_call("call_slow", "slow", {}),
        {"type": "response.output_audio.delta", "delta": "AA=="},
        function_call("call_fast", "fast", {}),
    )
    await eventually(lambda: "call_fast" in websocket.outputs(), "the fast answer")

    assert "call_slow" not in websocket.outputs()
    assert [event.type for event in recorder.events][-2:] == [
        "response.output_audio.delta",
        "response.output_item.done",
    ]

    release.set()
    await eventually(lambda: "call_slow" in websocket.outputs(), "the slow answer")
    assert websocket.outputs()["call_slow"] == "finally"
    assert answered_in_order(websocket, "call_slow")
    await finish(agent, task)


async def test_a_tool_that_runs_past_its_timeout_is_answered_with_a_timeout_error(
    websocket: FakeWebSocket, recorder: RecordingObserver
) -> None:
    agent = make_agent(websocket, observers=[recorder])

    @agent.register_realtime_function(timeout=0.01)
    async def stuck() -> str:
        await asyncio.Event().wait()
        return "never"

    task = await start(agent, websocket)
    websocket.feed(function_call("call_stuck", "stuck", {}))
    await eventually(lambda: "call_stuck" in websocket.outputs())

    assert websocket.outputs()["call_stuck"]["error"]["type"] == "timeout"
    await eventually(lambda: ("finished", "call_stuck", "stuck", "timed_out") in recorder.tool_calls)
    await finish(agent, task)


async def test_an_unknown_tool_is_answered_with_an_error_listing_the_available_ones(
    websocket: FakeWebSocket, recorder: RecordingObserver
) -> None:
    def known() -> int:
        return 1

    agent = make_agent(websocket, tools=[known], observers=[recorder])
    task = await start(agent, websocket)
    websocket.feed(function_call("call_x", "delete_everything", {}))
    await eventually(lambda: "call_x" in websocket.outputs())

    assert websocket.outputs()["call_x"] == {
        "error": {"type": "unknown_tool", "message": "No tool named 'delete_everything'. Available: known."}
    }
    assert answered_in_order(websocket, "call_x")
    await eventually(lambda: ("finished", "call_x", "delete_everything", "rejected") in recorder.tool_calls)
    await finish(agent, task)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"a": "not a number"}, "a: Input should be a valid integer"),
        ({}, "a: Field required"),
        ({"a": 1, "extra": True}, "extra: unexpected argument"),
        ("{broken json", "The arguments are not a JSON object."),
    ],
)
async def test_invalid_arguments_are_answered_with_an_error(
    websocket: FakeWebSocket, arguments: dict[str, Any] | str, message: str
) -> None:
    calls: list[int] = []

    def double(a: int) -> int:
        calls.append(a)
        return a * 2

    agent = make_agent(websocket, tools=[double])
    task = await start(agent, websocket)
    websocket.feed(function_call("call_bad", "double", arguments))
    await eventually(lambda: "call_bad" in websocket.outputs())

    error = websocket.outputs()["call_bad"]["error"]
    assert error["type"] == "invalid_arguments" and message in error["message"]
    assert answered_in_order(websocket, "call_bad")
    assert calls == []
    await finish(agent, task)


async def test_a_tool_gets_the_sessions_context_which_the_model_cannot_forge(websocket: FakeWebSocket) -> None:
    seen: list[ToolContext] = []
    agent = make_agent(websocket)

    @agent.register_realtime_function()
    def whoami(context: ToolContext) -> str:
        seen.append(context)
        return context.username

    assert agent.tools["whoami"].parameters_schema()["properties"] == {}
    task = await start(agent, websocket)
    websocket.feed(
        function_call("call_me", "whoami", {}),
        function_call("call_forged", "whoami", {"context": {"user_id": 1, "username": "root"}}),
    )
    await eventually(lambda: {"call_me", "call_forged"} <= set(websocket.outputs()))

    assert websocket.outputs()["call_me"] == "alice"
    assert websocket.outputs()["call_forged"]["error"]["type"] == "invalid_arguments"
    assert seen == [CONTEXT]
    await finish(agent, task)


async def test_a_context_tool_without_a_signed_in_user_is_refused(websocket: FakeWebSocket) -> None:
    def whoami(context: ToolContext) -> str:
        return context.username

    agent = make_agent(websocket, tools=[whoami], context=None)
    task = await start(agent, websocket)
    websocket.feed(function_call("call_anon", "whoami", {}))
    await eventually(lambda: "call_anon" in websocket.outputs())

    assert websocket.outputs()["call_anon"]["error"]["type"] == "no_user"
    await finish(agent, task)


async def test_a_repeated_call_id_runs_the_tool_once(websocket: FakeWebSocket) -> None:
    runs: list[str] = []

    async def once() -> str:
        runs.append("ran")
        return "ok"

    agent = make_agent(websocket, tools=[once])
    task = await start(agent, websocket)
    websocket.feed(function_call("call_dup", "once", {}), function_call("call_dup", "once", {}))
    await eventually(lambda: "call_dup" in websocket.outputs())
    websocket.feed({"type": "marker"})
    await eventually(lambda: agent.observers[0].pending == 0)  # type: ignore[attr-defined]

    assert runs == ["ran"]
    assert sum(1 for f in websocket.sent if f["type"] == "conversation.item.create") == 1
    await finish(agent, task)


async def test_a_tool_returning_something_not_json_is_answered_with_an_error(websocket: FakeWebSocket) -> None:
    async def weird() -> Any:
        return {1, 2}

    built = make_tool(weird)
    agent = make_agent(websocket, tools=[Tool(name="weird", description="", function=weird,
                                              arguments_model=built.arguments_model, is_async=True)])  # fmt: skip
    task = await start(agent, websocket)
    websocket.feed(function_call("call_w", "weird", {}))
    await eventually(lambda: "call_w" in websocket.outputs())

    # default=str turns a set into its text; what matters is that the call is answered with valid JSON.
    assert websocket.outputs()["call_w"] == "{1, 2}"
    await finish(agent, task)


# --- observers ----------------------------------------------------------------------------------------


async def test_every_observer_gets_every_event_in_order_and_a_failing_one_does_not_stop_the_run(
    websocket: FakeWebSocket, recorder: RecordingObserver, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Observer):
        async def on_event(self, event: RealtimeEvent) -> None:
            raise RuntimeError("observer bug")

    class WontStart(Observer):
        events = 0

        async def start(self, agent: VoiceAgent) -> None:
            raise RuntimeError("cannot start")

        async def on_event(self, event: RealtimeEvent) -> None:
            WontStart.events += 1

    agent = make_agent(websocket, observers=[Broken(), WontStart(), recorder])
    task = asyncio.create_task(agent.run())
    websocket.feed({"type": "session.created", "session": {"id": "s"}}, "garbage", {"type": "response.created"})
    websocket.close()
    await task  # the socket closed: run ends by itself

    assert [event.type for event in recorder.events] == ["session.created", "ag2.invalid_frame", "response.created"]
    assert recorder.started and recorder.closed
    assert WontStart.events == 0
    assert "Observer Broken failed on session.created" in caplog.text
    assert "Observer WontStart failed to start" in caplog.text
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_function_call_events_reach_observers_too(websocket: FakeWebSocket, recorder: RecordingObserver) -> None:
    agent = make_agent(websocket, observers=[recorder])
    task = await start(agent, websocket)
    websocket.feed(function_call("call_1", "nothing", {}))
    await eventually(lambda: any(isinstance(e, FunctionCall) for e in recorder.events))

    await finish(agent, task)


# --- stopping -------------------------------------------------------------------------------------------


async def test_stop_ends_run_and_leaves_nothing_running_even_with_a_tool_in_flight(
    websocket: FakeWebSocket, recorder: RecordingObserver
) -> None:
    agent = make_agent(websocket, observers=[recorder])

    @agent.register_realtime_function()
    async def forever() -> str:
        await asyncio.Event().wait()
        return "never"

    task = await start(agent, websocket)
    websocket.feed(function_call("call_forever", "forever", {}))
    await eventually(lambda: ("started", "call_forever", "forever", {}) in recorder.tool_calls)

    await agent.stop()

    assert task.done() and task.exception() is None
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert ("finished", "call_forever", "forever", "failed") in recorder.tool_calls  # recorded before close
    assert recorder.closed
    assert not agent.is_running


async def test_stop_from_inside_an_observer_ends_the_run(websocket: FakeWebSocket) -> None:
    class HangUp(Observer):
        async def on_event(self, event: RealtimeEvent) -> None:
            if event.type == "ag2.hangup":
                assert self.agent is not None
                await self.agent.stop()

    agent = make_agent(websocket, observers=[HangUp()])
    task = asyncio.create_task(agent.run())
    websocket.feed({"type": "ag2.hangup"})

    await task

    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_stop_before_run_is_a_no_op_and_run_twice_is_refused(websocket: FakeWebSocket) -> None:
    agent = make_agent(websocket)
    await agent.stop()

    task = await start(agent, websocket)
    with pytest.raises(RuntimeError, match="already running"):
        await agent.run()
    await finish(agent, task)


async def test_cancelling_run_itself_propagates_and_cleans_up(websocket: FakeWebSocket) -> None:
    agent = make_agent(websocket)
    task = await start(agent, websocket)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_connect_failure_propagates_from_run_and_leaves_nothing_running(
    websocket: FakeWebSocket, openai: respx.MockRouter, recorder: RecordingObserver
) -> None:
    openai.post(MINT_URL).mock(return_value=httpx.Response(401))
    agent = make_agent(websocket, observers=[recorder])

    with pytest.raises(RealtimeAuthError):
        await agent.run()

    assert websocket.sent[0]["type"] == "ag2.error"
    assert not recorder.started
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_sync_tool_without_the_database_does_not_wait_for_the_orm_thread() -> None:
    """A tool made with uses_database=False runs on the worker pool, not on asgiref's one sync thread where
    the Recorder's writes run (the built-in clock and calculator); a database tool stays on that thread."""
    import threading

    from asgiref.sync import sync_to_async

    orm_thread = await sync_to_async(threading.get_ident, thread_sensitive=True)()

    def where() -> int:
        return threading.get_ident()

    pure = make_tool(where, uses_database=False)
    orm = make_tool(where)
    assert orm.uses_database and not pure.uses_database
    assert await orm.invoke({}, None) == orm_thread
    assert await pure.invoke({}, None) != orm_thread

    from voice.tools import BUILTIN_TOOLS

    assert not BUILTIN_TOOLS["current_time"].uses_database and not BUILTIN_TOOLS["calculator"].uses_database
    assert BUILTIN_TOOLS["session_history"].uses_database


async def test_an_inline_tool_runs_on_the_event_loop_and_answers_like_any_other() -> None:
    """inline=True (the built-in clock and calculator): the function runs in the loop's own thread, no hop
    to any thread; its result and its ToolError reach the model as a threaded tool's would."""
    import threading

    from voice.tools import BUILTIN_TOOLS

    def where(fail: bool = False) -> int:
        if fail:
            raise ToolError("asked to fail")
        return threading.get_ident()

    inline = make_tool(where, inline=True)
    assert inline.inline and not inline.uses_database  # the ORM refuses the loop: an inline tool has no database
    assert await inline.invoke({}, None) == threading.get_ident()
    with pytest.raises(ToolError, match="asked to fail"):
        await inline.invoke({"fail": True}, None)
    assert await make_tool(where, uses_database=False).invoke({}, None) != threading.get_ident()

    assert BUILTIN_TOOLS["current_time"].inline and BUILTIN_TOOLS["calculator"].inline
    assert not BUILTIN_TOOLS["session_history"].inline and BUILTIN_TOOLS["session_history"].uses_database


def test_inline_is_refused_for_an_async_tool() -> None:
    async def already_on_the_loop() -> str:
        return "ok"

    with pytest.raises(ValueError, match="inline is for sync tools"):
        make_tool(already_on_the_loop, inline=True)
