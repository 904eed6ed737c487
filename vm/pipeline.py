"""Running a pipeline (spec 15, 30): stages in order, each one's output the
next one's input, with lifecycle emits on the `pipeline:*` channels.

`Name.run(x)` evaluates to `Ok(last output)` or `Err(PipelineError)` naming
the stage that failed: a stage that returns `Err(e)` or raises a fault stops
the pipeline. A stage returning `Ok(v)` hands `v` on (spec 30 unwrapping).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from concerto.vm.decorators import Call, elapsed_ms
from concerto.vm.operators import as_fault, fault_value
from concerto.vm.values import Err, Ok, StructValue, display


@dataclass
class LinkedStage:
    name: str
    call: Call  # the stage function behind its decorators


@dataclass
class LinkedPipeline:
    name: str
    stages: list[LinkedStage]


def run_pipeline(vm: Any, pipeline: LinkedPipeline, value: Any) -> Any:
    name = pipeline.name
    started = time.perf_counter()
    vm.emit("pipeline:start", {"name": name, "input": value})
    for stage in pipeline.stages:
        vm.emit("pipeline:stage_start", {"name": name, "stage": stage.name})
        stage_started = time.perf_counter()
        try:
            out = stage.call(vm, [value])
        except Exception as exc:
            fault = as_fault(exc)
            if fault is None:
                raise
            return _failed(vm, name, stage.name, fault_value(fault))
        if type(out) is Err:
            return _failed(vm, name, stage.name, out.value)
        value = out.value if type(out) is Ok else out
        vm.emit("pipeline:stage_complete", {"name": name, "stage": stage.name,
                                            "duration_ms": elapsed_ms(stage_started)})
    vm.emit("pipeline:complete", {"name": name, "duration_ms": elapsed_ms(started)})
    return Ok(value)


def _failed(vm: Any, pipeline: str, stage: str, error: Any) -> Err:
    inner = error.fields.get("message") if isinstance(error, StructValue) else None
    text = display(inner if inner is not None else error)
    message = f"pipeline `{pipeline}` failed in stage `{stage}`: {text}"
    vm.emit("pipeline:error", {"name": pipeline, "stage": stage, "error": text})
    return Err(StructValue("PipelineError", {"message": message, "pipeline": pipeline, "stage": stage,
                                             "cause": error}))
