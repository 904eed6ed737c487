"""Embed a Concerto program in a Python service.

    python examples/host_app/host.py

Loads review.conc, answers its `await emit("review:decision", ...)` questions
from an async handler, prints results and pipeline progress, and shows the
run's metrics.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from concerto import RunError, Runtime, RuntimeConfig

HERE = Path(__file__).parent


async def main() -> None:
    runtime = Runtime(RuntimeConfig(execution_timeout=30))
    runtime.load_source(HERE / "review.conc")

    @runtime.on_emit("review:decision")
    async def decide(payload: dict) -> str:
        await anyio.sleep(0.01)  # e.g. a call to a review service
        return "approved" if "contract" in payload["document"] else "needs changes"

    @runtime.on("result")
    def show(payload: str) -> None:
        print("result:", payload)

    stages: list[str] = []
    runtime.on("pipeline:stage_complete", lambda p: stages.append(p["stage"]))

    try:
        reviewed = await runtime.execute()
    except RunError as e:
        print(f"run failed: {e.kind}: {e.message}")
        raise SystemExit(1) from None
    print(f"reviewed {reviewed} documents; {len(stages)} stages completed")
    print(f"emits: {runtime.metrics()['emit_count']}")


if __name__ == "__main__":
    anyio.run(main)
