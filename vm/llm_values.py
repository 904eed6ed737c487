"""Runtime values of the LLM parts of the language (kept apart from the model
runtime so that loading a program never imports httpx):

    ModelRef      a declared model, as a value (`let m = Classifier;`)
    ModelBuilder  `Model.with_memory(m)` / `.with_tools([..])`: a model plus per-call settings
    MemoryStore   a `memory` declaration: an ordered list of chat messages
    ModelStream   the chunks of `Model.stream(p)`, pulled as they arrive
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import anyio

from concerto.vm.executor import suspend
from concerto.vm.operators import Thrown
from concerto.vm.values import ConcertoError, StructValue


class ModelRef:
    __slots__ = ("name",)
    concerto_type = "Model"

    def __init__(self, name: str) -> None:
        self.name = name

    def concerto_debug(self) -> str:
        return f"<model {self.name}>"

    def concerto_json(self) -> Any:
        return {"model": self.name}


class ModelBuilder:
    """A model plus settings for the calls made through it (spec 24, 25):
    a memory, tools added with `with_tools`, and `without_tools()`. Each
    builder method returns a new builder, so a chain never changes a value
    another variable holds."""

    __slots__ = ("model", "memory", "auto", "extra_tools", "no_default_tools")
    concerto_type = "ModelBuilder"

    def __init__(self, model: str, memory: "MemoryStore | None" = None, auto: bool = True,
                 extra_tools: tuple[str, ...] = (), no_default_tools: bool = False) -> None:
        self.model = model
        self.memory = memory
        self.auto = auto
        self.extra_tools = extra_tools
        self.no_default_tools = no_default_tools

    def but(self, **changes: Any) -> "ModelBuilder":
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return ModelBuilder(**fields)

    def concerto_debug(self) -> str:
        parts = [f"memory {self.memory.name}"] if self.memory else []
        if self.no_default_tools:
            parts.append("without its tools")
        if self.extra_tools:
            parts.append("with tools " + ", ".join(self.extra_tools))
        return f"<model {self.model}" + (" " + ", ".join(parts) if parts else "") + ">"

    def concerto_json(self) -> Any:
        return {"model": self.model, "memory": self.memory.name if self.memory else None,
                "tools": list(self.extra_tools), "without_tools": self.no_default_tools}


class MemoryStore:
    """Spec 24: messages in order, oldest dropped past max_messages."""

    __slots__ = ("name", "max_messages", "messages")
    concerto_type = "Memory"

    def __init__(self, name: str, max_messages: int | None = None) -> None:
        self.name = name
        self.max_messages = max_messages
        self.messages: deque[tuple[str, str]] = deque(maxlen=max_messages)

    def append(self, role: str, content: str) -> None:
        self.messages.append((role, content))

    def concerto_debug(self) -> str:
        return f"<memory {self.name}: {len(self.messages)} messages>"

    def concerto_json(self) -> Any:
        return [{"role": r, "content": c} for r, c in self.messages]


def message_value(role: str, content: str) -> StructValue:
    return StructValue("Message", {"role": role, "content": content})


class ModelStream:
    """Chunks of a streamed reply. The connection manager's task pushes deltas
    into a queue as they arrive; iterating pulls them, so a program sees (and
    can emit) each chunk while the rest is still on the wire."""

    concerto_type = "Stream"

    def __init__(self, model: str, on_done: Any, error_value: Any = None) -> None:
        self.model = model
        # Unbounded: the network task never waits for the program (the
        # connection manager bounds a reply's size and duration).
        self._send, self._receive = anyio.create_memory_object_stream[Any](max_buffer_size=math.inf)
        self._on_done = on_done
        # failure -> the AgentError value the loop throws.
        self._error_value = error_value
        self._finished = False
        self._head: list[Any] = []  # the item `first` took, not yet iterated
        self.text = ""

    async def deliver(self, item: Any) -> None:
        self._send.send_nowait(item)

    async def first(self) -> Any:
        """Wait for the first item (text, the end, or the failure) and keep it
        for the loop."""
        item = await self._receive.receive()
        self._head.append(item)
        return item

    def concerto_iter(self) -> Any:
        return self._chunks()

    def _chunks(self) -> Any:
        index = 0
        while not self._finished:
            item = self._head.pop() if self._head else suspend(self._receive.receive)
            if isinstance(item, BaseException):
                self._finished = True
                if self._error_value is not None:
                    raise Thrown(self._error_value(item))
                raise ConcertoError(f"stream from `{self.model}` failed: {item}", "AgentError")
            if item.done:
                self._finished = True
                self._on_done(self.text)
                return
            self.text += item.text
            yield StructValue("StreamChunk", {"text": item.text, "index": index})
            index += 1

    def concerto_debug(self) -> str:
        return f"<stream from {self.model}>"

    def concerto_json(self) -> Any:
        return {"stream": self.model}
