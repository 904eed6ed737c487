"""`concerto run --metrics`: the metering snapshot as rich tables."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table


def metrics_table(snapshot: dict[str, Any]) -> Table:
    table = Table(title="model calls", title_justify="left")
    for column in ("", "calls", "requests", "retries", "failures", "tool calls", "tokens in", "tokens out",
                   "avg latency ms", "est. cost $"):
        table.add_column(column, justify="left" if not column else "right")

    def add(label: str, row: dict[str, Any], style: str | None = None) -> None:
        cost = f"{row['cost_usd']:.6f}" + (" +?" if row["unpriced_tokens"] else "")
        table.add_row(label, str(row["calls"]), str(row["requests"]), str(row["retries"]), str(row["failures"]),
                      str(row.get("tool_calls", 0)), str(row["tokens_in"]), str(row["tokens_out"]), f"{row['avg_latency_ms']:.1f}", cost,
                      style=style)

    for name, row in snapshot["models"].items():
        add(f"model {name}", row)
    for name, row in snapshot["connections"].items():
        add(f"connection {name}", row, "dim")
    add("total", snapshot["total"], "bold")
    if snapshot["total"]["unpriced_tokens"]:
        table.caption = escape("+? : some tokens are for models with no known price; add [pricing.\"MODEL\"] to Concerto.toml")
    return table
