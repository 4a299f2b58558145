"""Usage -> cost, from the editable ModelPrice table."""

from __future__ import annotations

import logging
import re
from decimal import Decimal
from typing import Any

from voice.models import MinutePrice, ModelPrice

logger = logging.getLogger(__name__)
_warned: set[str] = set()


# A dated snapshot of a model: "gpt-realtime-2025-08-28" is billed as "gpt-realtime".
_SNAPSHOT = re.compile(r"^(?P<base>.+)-\d{4}-\d{2}-\d{2}$")


def price_for(model: str) -> ModelPrice | None:
    """The price row of exactly this model, or of the model a dated snapshot belongs to; else None.

    Never the price of another model: "gpt-realtime-mini" once matched "gpt-realtime" by prefix and was
    billed at several times its cost. A model without a row of its own is unpriced (cost recorded as null).
    """
    snapshot = _SNAPSHOT.match(model)
    candidates = [model, snapshot["base"]] if snapshot else [model]
    prices = {p.model: p for p in ModelPrice.objects.filter(model__in=candidates)}
    for name in candidates:
        if name in prices:
            return prices[name]
    if model not in _warned:
        _warned.add(model)
        logger.warning("No ModelPrice for model %r: its responses are recorded as unpriced (no cost)", model)
    return None


def usage_counts(usage: dict[str, Any] | None) -> dict[str, int]:
    """Flatten a GA `response.done` usage object into ResponseUsage's columns; tolerant of gaps."""
    usage = usage if isinstance(usage, dict) else {}

    def num(source: Any, key: str) -> int:
        value = source.get(key) if isinstance(source, dict) else None
        return value if isinstance(value, int) and value >= 0 else 0

    inp = usage.get("input_token_details") or {}
    out = usage.get("output_token_details") or {}
    cached = inp.get("cached_tokens_details") if isinstance(inp, dict) else None
    return {
        "total_tokens": num(usage, "total_tokens"),
        "input_tokens": num(usage, "input_tokens"),
        "output_tokens": num(usage, "output_tokens"),
        "input_text_tokens": num(inp, "text_tokens"),
        "input_audio_tokens": num(inp, "audio_tokens"),
        "input_image_tokens": num(inp, "image_tokens"),
        "cached_tokens": num(inp, "cached_tokens"),
        "cached_text_tokens": num(cached, "text_tokens"),
        "cached_audio_tokens": num(cached, "audio_tokens"),
        "output_text_tokens": num(out, "text_tokens"),
        "output_audio_tokens": num(out, "audio_tokens"),
    }


def cost_of(price: ModelPrice | None, counts: dict[str, int]) -> Decimal | None:
    """The cost of one response, or None (unpriced) when the model, or a kind of token it used, has no price."""
    if price is None:
        return None
    if counts["input_image_tokens"] and price.image_input is None:
        return None
    cached_text = counts["cached_text_tokens"]
    cached_audio = counts["cached_audio_tokens"]
    if counts["cached_tokens"] and not (cached_text or cached_audio):
        # No breakdown of the cached tokens: bill them as text, the cheaper assumption for the user.
        cached_text = min(counts["cached_tokens"], counts["input_text_tokens"])
    return price.cost(
        input_text=counts["input_text_tokens"],
        input_audio=counts["input_audio_tokens"],
        input_image=counts["input_image_tokens"],
        cached_text=cached_text,
        cached_audio=cached_audio,
        output_text=counts["output_text_tokens"],
        output_audio=counts["output_audio_tokens"],
    )


def minute_price_for(model: str) -> MinutePrice | None:
    """The per-minute price of a model billed by time (GPT-Live), or None (its time is then unpriced)."""
    price = MinutePrice.objects.filter(model=model).first()
    if price is None and f"minutes:{model}" not in _warned:
        _warned.add(f"minutes:{model}")
        logger.warning("No MinutePrice for model %r: its session time is recorded as unpriced (no cost)", model)
    return price


def time_cost_increment(price: MinutePrice | None, cumulative: tuple[Decimal, Decimal],
                        added: tuple[Decimal, Decimal]) -> Decimal | None:
    """The cost GPT-Live's session time adds: cost(total so far) - cost(total before), each rounded to the
    micro-dollar, so the rows add up exactly to the rounded cost of the whole time. None: unpriced."""
    if price is None:
        return None
    active, standby = cumulative
    before = (active - added[0], standby - added[1])
    step = Decimal("0.000001")
    return price.time_cost(active, standby).quantize(step) - price.time_cost(*before).quantize(step)


def add_cost(total: Decimal | None, cost: Decimal | None) -> Decimal | None:
    """A session's running cost: once one response is unpriced, the session's cost is unknown (null)."""
    return None if total is None or cost is None else total + cost


def format_cost(cost: Decimal | None) -> str | None:
    """The cost as published to dashboards: a fixed-point string, or None for unpriced."""
    return None if cost is None else f"{cost:.6f}"
