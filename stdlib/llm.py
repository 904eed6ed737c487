"""Built-ins of the LLM parts of the language: `Message::system/user/assistant`
(spec 02), Memory methods (spec 24), and model methods reached through a
value whose type the compiler did not know (`CALL_METHOD` on a Model)."""

from __future__ import annotations

from typing import Any

from concerto.stdlib.registry import REGISTRY
from concerto.stdlib.support import UNCHECKED, check_collection, type_fault
from concerto.vm.llm_values import MemoryStore, message_value
from concerto.vm.values import ConcertoError, chunked, debug


def _memory(value: Any, where: str) -> MemoryStore:
    if type(value) is not MemoryStore:
        raise type_fault(where, "a Memory", value)
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ConcertoError(f"{what} must be a String", "TypeError")
    return value


for _role in ("system", "user", "assistant"):
    def _make(role: str) -> Any:
        def build(ctx: Any, content: Any) -> Any:
            return message_value(role, _text(content, f"Message::{role} content"))
        return build

    REGISTRY.function(f"Message::{_role}", 1)(_make(_role))


@REGISTRY.method("Memory", "append", 2, mutates=False)
def memory_append(ctx: Any, memory: MemoryStore, role: Any, content: Any) -> None:
    messages = _memory(memory, "Memory.append").messages
    if type(role) is not str or role not in ("system", "user", "assistant"):
        raise ConcertoError(f"memory role must be \"system\", \"user\" or \"assistant\", got {debug(role)}",
                            "TypeError")
    text = _text(content, "memory content")
    if messages.maxlen is None and len(messages) >= UNCHECKED:  # a window never grows
        check_collection(len(messages) + 1, "Memory.append")
    memory.append(role, text)


def _messages(entries: list) -> list:
    out: list = []
    for part in chunked(entries):
        out += [message_value(r, c) for r, c in part]
    return out


@REGISTRY.method("Memory", "messages", 0)
def memory_messages(ctx: Any, memory: MemoryStore) -> list:
    return _messages(list(_memory(memory, "Memory.messages").messages))


@REGISTRY.method("Memory", "last", 1)
def memory_last(ctx: Any, memory: MemoryStore, n: Any) -> list:
    _memory(memory, "Memory.last")
    if type(n) is not int or n < 0:
        raise ConcertoError("Memory.last needs a non-negative Int", "TypeError")
    items = list(memory.messages)
    return _messages(items[-n:] if n else [])


@REGISTRY.method("Memory", "len", 0)
def memory_len(ctx: Any, memory: MemoryStore) -> int:
    return len(_memory(memory, "Memory.len").messages)


@REGISTRY.method("Memory", "clear", 0)
def memory_clear(ctx: Any, memory: MemoryStore) -> None:
    _memory(memory, "Memory.clear").messages.clear()


# method -> (fewest, most) arguments
_MODEL_METHODS = {"execute": (1, 1), "chat": (1, 1), "stream": (1, 1), "with_memory": (1, 2),
                  "with_tools": (1, 1), "without_tools": (0, 0)}
for _method, (_least, _most) in _MODEL_METHODS.items():
    def _forward(method: str) -> Any:
        def call(vm: Any, model: Any, *args: Any) -> Any:
            return vm.call_model(model, method, None, list(args))
        return call

    REGISTRY.method(("Model", "ModelBuilder"), _method, _least, _most)(_forward(_method))
