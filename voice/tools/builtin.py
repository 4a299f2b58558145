"""The built-in tools' implementations, registered in ``voice.tools`` when the app is ready.

Each tool is a plain typed function turned into a ``voice.agent.Tool``. Tools that touch the database are
sync (they run in asgiref's thread) and act only for the user in their ``ToolContext``; the pure, bounded
ones (clock, calculator) run inline on the event loop.
"""

from __future__ import annotations

import ast
import math
import operator
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from voice.agent import ToolContext, ToolError, make_tool
from voice.models import VoiceSession
from voice.tools import register

# --- current_time ---------------------------------------------------------------------------------


def current_time(
    timezone: Annotated[
        str, Field(description="IANA time zone, e.g. 'Europe/Paris' or 'UTC'", min_length=1, max_length=64)
    ] = "UTC",
) -> dict[str, str]:
    """The current date and time in a time zone."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        # ValueError: names like "../etc" that are not keys at all.
        raise ToolError(f"Unknown time zone {timezone!r}; use an IANA name such as 'Europe/Paris'.") from None
    now = datetime.now(zone)
    return {
        "timezone": timezone,
        "iso": now.isoformat(timespec="seconds"),
        "date": now.date().isoformat(),
        "time": now.strftime("%H:%M"),
        "weekday": now.strftime("%A"),
        "utc_offset": now.strftime("%z"),
    }


# --- calculator -----------------------------------------------------------------------------------

MAX_EXPRESSION_LENGTH = 200
MAX_NODES = 100
MAX_EXPONENT = 100
# Results (and intermediate values) beyond this many bits are refused: big integers cost time and memory.
MAX_INTEGER_BITS = 1024

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, tuple[Callable[..., Any], int]] = {
    # name: (function, number of arguments)
    "sqrt": (math.sqrt, 1),
    "abs": (abs, 1),
    "round": (round, 1),
    "floor": (math.floor, 1),
    "ceil": (math.ceil, 1),
    "log": (math.log, 1),
    "log10": (math.log10, 1),
    "exp": (math.exp, 1),
    "sin": (math.sin, 1),
    "cos": (math.cos, 1),
    "tan": (math.tan, 1),
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def _check_size(value: float) -> float:
    if isinstance(value, int) and value.bit_length() > MAX_INTEGER_BITS:
        raise ToolError("The result is too large.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("The result is not a finite number.")
    return value


def _power(base: float, exponent: float) -> float:
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(f"Exponents are limited to ±{MAX_EXPONENT}.")
    # Refuse before computing: the bit length of base**exponent is about bits(base) * exponent.
    exact = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if exact and int(base).bit_length() * exponent > MAX_INTEGER_BITS:
        raise ToolError("The result is too large.")
    result = base**exponent
    if isinstance(result, complex):
        raise ToolError("The result is not a real number.")
    return result


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        # bool is an int subclass, but "True + 1" is not arithmetic.
        if isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return _check_size(node.value)
        raise ToolError(f"Only numbers are allowed, not {node.value!r}.")
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.BitXor):
            raise ToolError("'^' is not a power here; use '**' (e.g. 2**8).")
        function = _BINARY.get(type(node.op))
        if function is None:
            raise ToolError(f"The operator {type(node.op).__name__} is not allowed.")
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            return _check_size(_power(left, right))
        return _check_size(function(left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check_size(_UNARY[type(node.op)](_evaluate(node.operand)))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        function, arity = _FUNCTIONS[node.func.id]
        if node.keywords or len(node.args) != arity:
            raise ToolError(f"{node.func.id}() takes {arity} argument(s).")
        return _check_size(function(*(_evaluate(arg) for arg in node.args)))
    allowed = ", ".join(sorted(_FUNCTIONS)) + ", " + ", ".join(sorted(_CONSTANTS))
    raise ToolError(f"Not allowed in an expression: {ast.unparse(node)!r}. Numbers, + - * / // % **, {allowed}.")


def calculator(
    expression: Annotated[
        str,
        Field(
            description="An arithmetic expression, e.g. '(3 + 4) * 2**3 / sqrt(16)'",
            min_length=1,
            max_length=MAX_EXPRESSION_LENGTH,
        ),
    ],
) -> dict[str, Any]:
    """Evaluate an arithmetic expression exactly (numbers, + - * / // % **, parentheses, sqrt, log...)."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError):
        raise ToolError(f"{expression!r} is not a valid arithmetic expression.") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise ToolError("The expression is too long.")
    try:
        result = _evaluate(tree)
    except ZeroDivisionError:
        raise ToolError("Division by zero.") from None
    except (OverflowError, ValueError) as exc:
        # e.g. sqrt(-1), log(0), 10.0**400
        raise ToolError(f"Cannot compute {expression!r}: {exc}.") from None
    if isinstance(result, float) and result.is_integer() and abs(result) < 2**53:
        result = int(result)
    return {"expression": expression, "result": result}


# --- session_history ------------------------------------------------------------------------------


def session_history(context: ToolContext) -> dict[str, Any]:
    """How many voice sessions the current user has had (this one included), and when the previous one
    started."""
    if context.user_id is None:
        raise ToolError("Session history needs a signed-in user.")
    # Sync tools run on the one ORM thread, where every database_sync_to_async call (the Recorder's
    # writes, several a second) checks the connection's age and health before and after it.
    sessions = VoiceSession.objects.filter(user_id=context.user_id)
    count = sessions.count()
    previous = sessions
    current = _as_uuid(context.session_id)
    if current is not None:
        previous = previous.exclude(pk=current)
    last = previous.order_by("-started_at").values_list("started_at", flat=True).first()
    return {
        "session_count": count,
        "last_session_started_at": last.isoformat() if last else None,
    }


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return None


# --- registration ---------------------------------------------------------------------------------

# Run once, when the voice app is ready (voice.apps): the registry then holds these tools.
# Pure and bounded (the calculator by MAX_EXPRESSION_LENGTH, MAX_NODES, MAX_EXPONENT and MAX_INTEGER_BITS):
# microseconds of work, run on the event loop rather than hopping to a thread.
register(make_tool(current_time, timeout=5, inline=True))
register(make_tool(calculator, timeout=5, inline=True))
register(make_tool(session_history, timeout=10))

__all__ = ["calculator", "current_time", "session_history"]
