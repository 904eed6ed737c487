"""The emit channel (spec 10): how a program's emits reach the host.

Handlers are registered by pattern: an exact channel name, `prefix:*`, or `*`.
A handler for an exact channel is called with the payload; a wildcard handler
with (channel, payload). Host handlers see spec-20 JSON data; a `raw` handler
(the CLI) sees Concerto values.

Fire-and-forget emits go to every matching handler. A sync handler runs at
once; an async handler's coroutine joins an ordered delivery queue that a task
of the run drains, so the program does not wait for it; the queue holds at
most `max_queue` emits, and a program that outruns its host that far gets an
EmitError instead of unbounded memory. An awaited emit first delivers
everything before it (order is kept), then goes to the single most specific
handler, whose return value is the answer.

Buffered mode keeps emits until `flush_emits()`, an awaited emit, the buffer
reaching `max_queue`, `flush_interval` passing, or the end of the run.

Every channel and payload handed to the host first passes the run's Redactor
(vm/secrets.py): a program that emits a key the run holds emits `[redacted]`.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from concerto.vm.executor import suspend
from concerto.vm.operators import Thrown
from concerto.vm.secrets import Redactor
from concerto.vm.values import StructValue, from_json, to_json

EmitMode = Literal["immediate", "buffered"]


def pattern_matches(pattern: str, channel: str) -> bool:
    """An exact channel name, `prefix*` (e.g. `tool:*`), or `*`."""
    if pattern == "*" or pattern == channel:
        return True
    return pattern.endswith("*") and channel.startswith(pattern[:-1])


def pattern_specificity(pattern: str) -> tuple[int, int]:
    """Exact names beat prefixes, longer prefixes beat shorter ones, `*` comes last."""
    if "*" not in pattern:
        return (2, len(pattern))
    return (1 if pattern != "*" else 0, len(pattern))


@dataclass
class Handler:
    pattern: str
    fn: Callable[..., Any]
    raw: bool = False  # receives Concerto values, not JSON data

    def matches(self, channel: str) -> bool:
        return pattern_matches(self.pattern, channel)

    @property
    def specificity(self) -> tuple[int, int]:
        return pattern_specificity(self.pattern)

    def call(self, channel: str, payload: Any) -> Any:
        data = payload if self.raw else to_json(payload)
        if "*" in self.pattern:
            return self.fn(channel, data)
        return self.fn(data)


@dataclass
class Handlers:
    """The host's subscriptions: `listeners` (on) see every emit; awaited
    emits are answered by one of the `responders` (on_emit)."""

    listeners: list[Handler] = field(default_factory=list)
    responders: list[Handler] = field(default_factory=list)

    def on(self, pattern: str, fn: Callable[..., Any], raw: bool = False) -> None:
        self.listeners.append(Handler(pattern, fn, raw))

    def on_emit(self, pattern: str, fn: Callable[..., Any], raw: bool = False) -> None:
        self.responders.append(Handler(pattern, fn, raw))

    def off(self, pattern: str) -> None:
        self.listeners = [h for h in self.listeners if h.pattern != pattern]
        self.responders = [h for h in self.responders if h.pattern != pattern]

    def for_channel(self, channel: str) -> list[Handler]:
        return [h for h in self.listeners if h.matches(channel)]

    def responder(self, channel: str) -> Handler | None:
        """The most specific on_emit handler that matches (the latest on a tie)."""
        best: Handler | None = None
        for h in self.responders:
            if h.matches(channel) and (best is None or h.specificity >= best.specificity):
                best = h
        return best


class NoReply(Exception):
    """A responder has no answer for this emit; its message is the EmitError's."""


def emit_error(channel: str, message: str) -> Thrown:
    return Thrown(StructValue("EmitError", {"message": message, "channel": channel}))


def handler_failed(channel: str, exc: Exception) -> Thrown:
    return emit_error(channel, f"handler for `{channel}` raised {type(exc).__name__}: {exc}")


class EmitChannel:
    def __init__(self, handlers: Handlers, mode: EmitMode = "immediate", max_queue: int = 10_000,
                 flush_interval: float | None = None, reply_timeout: float | None = None,
                 redactor: Redactor | None = None) -> None:
        self.handlers = handlers
        self.redactor = redactor or Redactor()
        self.mode = mode
        self.max_queue = max_queue
        self.flush_interval = flush_interval
        self.reply_timeout = reply_timeout
        self.count = 0
        self.channels: set[str] = set()
        self._buffer: list[tuple[str, Any]] = []
        self._last_flush = time.monotonic()
        send, receive = anyio.create_memory_object_stream[tuple[str, Any]](max_buffer_size=max_queue)
        self._send, self._receive = send, receive
        self._pending = 0
        self._idle = anyio.Event()
        self._idle.set()
        self._failure: Thrown | None = None

    # -- from VM code ------------------------------------------------------------
    def send(self, channel: str, payload: Any) -> None:
        self._raise_failure()
        self.count += 1
        self.channels.add(channel)
        if self.mode == "buffered":
            self._buffer.append((channel, payload))
            due = self.flush_interval is not None and time.monotonic() - self._last_flush >= self.flush_interval
            if len(self._buffer) >= self.max_queue or due:
                self.flush()
            return
        self._deliver(channel, payload)

    def flush(self) -> None:
        batch, self._buffer = self._buffer, []
        self._last_flush = time.monotonic()
        for channel, payload in batch:
            self._deliver(channel, payload)

    def ask(self, channel: str, payload: Any) -> Any:
        """`await emit(channel, payload)`: the host's answer, as a Concerto value."""
        self._raise_failure()
        self.count += 1
        self.channels.add(channel)
        self.flush()
        if self._pending:
            suspend(self._drained)
        self._raise_failure()
        if self.redactor:
            channel, payload = self.redactor.text(channel), self.redactor.value(payload)
        # `on` listeners see the question too (a `*` logger shows it), but only
        # an on_emit handler answers.
        for observer in self.handlers.for_channel(channel):
            self._call_listener(observer, channel, payload)
        handler = self.handlers.responder(channel)
        if handler is None:
            raise emit_error(channel, f"no listener for awaited channel `{channel}`")
        try:
            reply = handler.call(channel, payload)
            if inspect.isawaitable(reply):
                reply = suspend(self._reply, channel, reply)
        except Thrown:
            raise
        except NoReply as exc:
            raise emit_error(channel, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - a host bug becomes an error the program can catch
            raise handler_failed(channel, exc) from None
        return reply if handler.raw else from_json(reply)

    # -- on the loop --------------------------------------------------------------
    async def deliver_forever(self) -> None:
        """The run's delivery task for async handlers (started by the runtime)."""
        # Not `async with`: close() must still find what was never delivered.
        async for channel, awaitable in self._receive:
            try:
                await awaitable
            except Exception as exc:  # noqa: BLE001 - reported at the program's next emit
                if self._failure is None:
                    self._failure = handler_failed(channel, exc)
            finally:
                self._pending -= 1
                if not self._pending:
                    self._idle.set()

    async def flush_periodically(self) -> None:
        """Buffered mode: deliver at the configured interval even while the program is busy elsewhere."""
        assert self.flush_interval is not None
        while True:
            await anyio.sleep(self.flush_interval)
            if time.monotonic() - self._last_flush >= self.flush_interval:
                try:
                    self.flush()
                except Thrown as exc:
                    self._failure = self._failure or exc

    async def drain(self) -> None:
        """End of run: deliver what is buffered and wait for the queue."""
        self.flush()
        await self._drained()

    async def close(self) -> None:
        await self._send.aclose()
        # A run that ended early leaves undelivered coroutines: close them quietly.
        while True:
            try:
                _channel, awaitable = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            if hasattr(awaitable, "close"):
                awaitable.close()
        await self._receive.aclose()

    def raise_failure(self) -> None:
        self._raise_failure()

    # -- inside ----------------------------------------------------------------------
    def _deliver(self, channel: str, payload: Any) -> None:
        if self.redactor:
            channel, payload = self.redactor.text(channel), self.redactor.value(payload)
        for handler in self.handlers.for_channel(channel):
            self._call_listener(handler, channel, payload)

    def _call_listener(self, handler: Handler, channel: str, payload: Any) -> None:
        try:
            result = handler.call(channel, payload)
        except Exception as exc:  # noqa: BLE001 - a host bug becomes an error the program can catch
            raise handler_failed(channel, exc) from None
        if inspect.isawaitable(result):
            try:
                self._send.send_nowait((channel, result))
            except anyio.WouldBlock:
                if hasattr(result, "close"):
                    result.close()
                raise emit_error(channel, f"emit queue is full: {self.max_queue} emits are waiting for "
                                 "the host's handlers (max_emit_queue)") from None
            self._pending += 1
            self._idle = anyio.Event() if self._idle.is_set() else self._idle

    async def _drained(self) -> None:
        while self._pending:
            await self._idle.wait()

    async def _reply(self, channel: str, awaitable: Any) -> Any:
        if self.reply_timeout is None:
            return await awaitable
        with anyio.move_on_after(self.reply_timeout) as scope:
            return await awaitable
        if scope.cancelled_caught:
            raise emit_error(channel, f"no answer on `{channel}` within {self.reply_timeout:g} s")
        return None  # pragma: no cover

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

