"""Metering of model calls: tokens, calls, retries, failures, latency and an
estimated cost, per model and per connection (spec 11 "Token Tracking",
spec 17 "Metrics").

Counts are plain numbers, so a snapshot is JSON-ready; no key, prompt or reply
text is ever stored here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from concerto import ir

# US$ per million tokens (input, output), list prices as published by the
# providers; the manifest's [pricing] tables override or extend this.
DEFAULT_PRICING: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o1": (15.00, 60.00),
    "o3-mini": (1.10, 4.40),
    "claude-opus-4-20250514": (15.00, 75.00),
    "claude-sonnet-4-20250514": (3.00, 15.00),
    "claude-haiku-4-5-20251001": (1.00, 5.00),
    "claude-3-5-haiku-20241022": (0.80, 4.00),
}


@dataclass
class CallStats:
    calls: int = 0  # logical calls (one execute(), however many attempts)
    requests: int = 0  # HTTP requests (attempts) actually sent
    retries: int = 0
    failures: int = 0  # calls that ended in an error
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0  # summed over successful calls
    cost_usd: float = 0.0
    unpriced_tokens: int = 0  # tokens of models with no known price
    tool_calls: int = 0  # tool calls the model asked for and the runtime ran

    def add(self, other: "CallStats") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def avg_latency_ms(self) -> float:
        ok = self.calls - self.failures
        return self.latency_ms / ok if ok > 0 else 0.0


@dataclass
class Metrics:
    by_model: dict[str, CallStats] = field(default_factory=dict)
    by_connection: dict[str, CallStats] = field(default_factory=dict)

    def record(self, model: str, connection: str, delta: CallStats) -> None:
        self.by_model.setdefault(model, CallStats()).add(delta)
        self.by_connection.setdefault(connection, CallStats()).add(delta)

    def total(self) -> CallStats:
        out = CallStats()
        for stats in self.by_connection.values():
            out.add(stats)
        return out

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready: {"models": {...}, "connections": {...}, "total": {...}}."""

        def row(s: CallStats) -> dict[str, Any]:
            d = asdict(s)
            d["latency_ms"] = round(s.latency_ms, 3)
            d["avg_latency_ms"] = round(s.avg_latency_ms, 3)
            d["cost_usd"] = round(s.cost_usd, 8)
            return d

        return {
            "models": {k: row(v) for k, v in sorted(self.by_model.items())},
            "connections": {k: row(v) for k, v in sorted(self.by_connection.items())},
            "total": row(self.total()),
        }


def price_of(model_id: str, overrides: dict[str, ir.Pricing]) -> tuple[float, float] | None:
    """(input, output) US$ per million tokens, or None when unknown. Dated
    model ids fall back to their undated family name (gpt-4o-2024-08-06 -> gpt-4o)."""
    if model_id in overrides:
        p = overrides[model_id]
        return p.input_per_mtok, p.output_per_mtok
    if model_id in DEFAULT_PRICING:
        return DEFAULT_PRICING[model_id]
    base = model_id
    while "-" in base:
        base = base.rsplit("-", 1)[0]
        if base in overrides:
            p = overrides[base]
            return p.input_per_mtok, p.output_per_mtok
        if base in DEFAULT_PRICING:
            return DEFAULT_PRICING[base]
    return None


def cost(model_id: str, tokens_in: int, tokens_out: int, overrides: dict[str, ir.Pricing]) -> float | None:
    price = price_of(model_id, overrides)
    if price is None:
        return None
    return (tokens_in * price[0] + tokens_out * price[1]) / 1_000_000
