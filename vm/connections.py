"""The connection manager: the one gate every model call passes (spec 17).

For each connection it owns the provider adapter, one pooled
httpx.AsyncClient, the rate limiter and the retry policy. A call:

    acquire a permit (concurrency slot, then the request/token windows)
    -> send -> parse -> settle the token estimate -> release
    on a retryable failure: back off (exponential with jitter, at least what
    the provider's Retry-After / reset headers asked) and go again

Metering happens here too, so nothing reaches a provider unrecorded: every
attempt is counted, and the transport never re-sends a request on its own.
API keys are read from the environment when the manager is built and live
only in the Endpoint handed to adapters; before that, a HostPolicy (if the
caller gives one) decides whether the key may go to the connection's host.
The message of every failure a program sees passes the run's Redactor.

Bounds: a reply body is read up to the connection's max_response_bytes (an
error body up to ERROR_BODY_CAP); a streamed reply must finish within the
call's timeout and may not go quiet for longer than the idle limit (SSE
comments do not count as activity).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import anyio
import httpx
import msgspec

from concerto import ir
from concerto.vm import metering
from concerto.vm.connection_config import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_STREAM_IDLE_TIMEOUT,
    ERROR_BODY_CAP,
    ConfigError,
    ConnectionOverride,
    RetryPlan,
)
from concerto.vm.http_pool import AsyncioTransport, MalformedReply
from concerto.vm.providers.base import ChatRequest, Completion, Endpoint, ProviderError, StreamDelta
from concerto.vm.providers.mock import MockProvider
from concerto.vm.ratelimit import RateLimiter, estimate_tokens
from concerto.vm.secrets import HostPolicy, Redactor, host_port

KEYED_PROVIDERS = ("openai", "anthropic")

@dataclass
class CallFailed(Exception):
    """A call that failed after every attempt it was allowed."""

    error: ProviderError
    attempts: int

    def __str__(self) -> str:
        return self.error.message


@dataclass
class _Connection:
    name: str
    config: ir.ConnectionConfig
    provider: str
    endpoint: Endpoint
    adapter: ModuleType | None
    mock: MockProvider | None
    limiter: RateLimiter
    client: httpx.AsyncClient | None = None

    @property
    def max_bytes(self) -> int:
        return self.config.max_response_bytes or DEFAULT_MAX_RESPONSE_BYTES

    def idle_limit(self, timeout: float) -> float:
        return min(timeout, self.config.stream_idle_timeout or DEFAULT_STREAM_IDLE_TIMEOUT)


def _adapter(provider: str) -> ModuleType:
    if provider == "anthropic":
        from concerto.vm.providers import anthropic

        return anthropic
    from concerto.vm.providers import openai

    return openai  # openai, ollama and custom speak the OpenAI format


@dataclass
class CallOptions:
    model_label: str  # the Concerto model name, for metering and the mock's per-model replies
    timeout: float
    retry: RetryPlan | None = None  # None: the connection's own policy


@dataclass
class ConnectionManager:
    configs: dict[str, ir.ConnectionConfig]
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    overrides: dict[str, ConnectionOverride] = field(default_factory=dict)
    mock_all: bool = False
    mock_replies: str | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    rng: random.Random = field(default_factory=random.Random)
    metrics: metering.Metrics = field(default_factory=metering.Metrics)
    # Where keys may be sent besides the providers' default hosts; None skips
    # the check (internal callers that build their own connections).
    host_policy: HostPolicy | None = None
    redactor: Redactor = field(default_factory=Redactor)

    def __post_init__(self) -> None:
        self._conns: dict[str, _Connection] = {}
        problems = []
        for name, cfg in self.configs.items():
            try:
                self._conns[name] = self._build(name, cfg)
            except ConfigError as e:
                problems.append(str(e))
        if problems:
            raise ConfigError("\n".join(problems))

    def _build(self, name: str, cfg: ir.ConnectionConfig) -> _Connection:
        override = self.overrides.get(name, ConnectionOverride())
        provider = "mock" if self.mock_all else cfg.provider
        rl = cfg.rate_limit
        limiter = RateLimiter(rl.requests_per_minute, rl.tokens_per_minute, rl.concurrent_requests,
                              clock=self.clock, sleep=self.sleep)
        if provider == "mock":
            from concerto.vm.providers.mock import MockConfigError

            try:
                mock = MockProvider(self.mock_replies or cfg.replies)
            except MockConfigError as e:
                raise ConfigError(f"connection `{name}`: {e}") from None
            return _Connection(name, cfg, "mock", Endpoint("mock:", None), None, mock, limiter)
        if provider not in ("openai", "anthropic", "ollama", "custom"):
            raise ConfigError(f"connection `{name}`: provider {provider!r} is not supported "
                              "(supported: openai, anthropic, ollama, custom, mock)")
        key = override.api_key
        if key is None and cfg.api_key_env:
            key = self.environ.get(cfg.api_key_env) or None
            if key is None:
                raise ConfigError(f"connection `{name}`: environment variable {cfg.api_key_env} is not set "
                                  f"(set it, load it with --env FILE, or run with --mock for offline replies)")
        if key is None and provider in KEYED_PROVIDERS:
            raise ConfigError(f"connection `{name}`: provider {provider} needs an API key: "
                              f"set api_key_env in [connections.{name}] of Concerto.toml")
        secret_headers = {}
        for header, var in cfg.headers_env.items():
            value = self.environ.get(var)
            if not value:
                raise ConfigError(f"connection `{name}`: environment variable {var} (for header `{header}`) "
                                  "is not set (set it, or load it with --env FILE)")
            secret_headers[header] = value
        adapter = _adapter(provider)
        base_url = override.base_url or cfg.base_url or _default_base_url(provider, adapter)
        if not base_url:
            raise ConfigError(f"connection `{name}`: a `custom` connection needs base_url")
        # A base_url the host itself passed in is its own choice.
        if self.host_policy is not None and override.base_url is None and (key or secret_headers) \
                and not self.host_policy.permits(provider, base_url):
            what = (f"the key in {cfg.api_key_env}" if key and cfg.api_key_env and override.api_key is None
                    else "the API key" if key else f"the `{next(iter(secret_headers))}` header")
            raise ConfigError(
                f"connection `{name}`: will not send {what} to {host_port(base_url) or 'that URL'}: it is not "
                f"{provider}'s default host, no base_url of the local Concerto.toml names it, and it was not "
                "allowed with --allow-host (RuntimeConfig.allowed_hosts)")
        endpoint = Endpoint(base_url, key, {**cfg.headers, **secret_headers}, cfg.organization, cfg.project)
        return _Connection(name, cfg, provider, endpoint, adapter, None, limiter)

    def provider_of(self, connection: str) -> str:
        return self._conns[connection].provider

    # ------------------------------------------------------------ calls
    async def complete(self, connection: str, req: ChatRequest, opts: CallOptions) -> Completion:
        conn = self._conns[connection]
        plan = opts.retry or RetryPlan.of(conn.config.retry)
        stats = metering.CallStats(calls=1)
        started = time.perf_counter()
        attempt = 0
        try:
            while True:
                attempt += 1
                try:
                    done = await self._attempt(conn, req, opts)
                except ProviderError as err:
                    if await self._retry_after_failure(conn, stats, plan, err, attempt):
                        continue
                    raise self._failed(err, attempt) from None
                stats.requests += 1
                self._meter(stats, conn, done, time.perf_counter() - started)
                return done
        finally:
            self.metrics.record(opts.model_label, connection, stats)

    async def _attempt(self, conn: _Connection, req: ChatRequest, opts: CallOptions) -> Completion:
        permit = await conn.limiter.acquire(self._estimate(req))
        try:
            try:
                with anyio.fail_after(opts.timeout):
                    done = await self._send(conn, req, opts)
            except TimeoutError:
                raise ProviderError("timeout", f"{conn.name}: no reply within {opts.timeout:g} s") from None
            permit.settle(_used_tokens(done.tokens_in, done.tokens_out))
            return done
        finally:
            permit.release()

    async def _send(self, conn: _Connection, req: ChatRequest, opts: CallOptions) -> Completion:
        if conn.mock is not None:
            return conn.mock.complete(req, opts.model_label)
        assert conn.adapter is not None
        call = conn.adapter.build_request(req, conn.endpoint)
        async with self._post(conn, call, opts.timeout, streaming=False) as resp:
            body = await _read_body(resp, conn.max_bytes, conn.name)
        return conn.adapter.reply_parser(req)(resp.status_code, resp.headers, body)

    @contextlib.asynccontextmanager
    async def _post(self, conn: _Connection, call: Any, timeout: float, streaming: bool) -> AsyncIterator[httpx.Response]:
        """POST one request; the caller reads the reply inside. An error status
        is raised as the provider's error (its body read up to ERROR_BODY_CAP);
        every transport failure, while sending or while the caller reads,
        becomes a ProviderError of the kind the retry policy understands."""
        assert conn.adapter is not None
        client = self._client(conn)
        where = _origin(call.url)
        try:
            async with client.stream("POST", call.url, content=msgspec.json.encode(call.body),
                                     headers=call.headers, timeout=httpx.Timeout(timeout)) as resp:
                if resp.status_code >= 400:
                    body = await _read_body(resp, ERROR_BODY_CAP, conn.name, truncate=True)
                    raise conn.adapter.classify_error(resp.status_code, resp.headers, body)
                yield resp
        except httpx.TimeoutException:
            raise ProviderError("timeout", f"{conn.name}: no reply within {timeout:g} s") from None
        except MalformedReply as e:
            raise ProviderError("invalid_response", f"{conn.name}: malformed reply from {where}: {e}") from None
        except (httpx.ConnectError, httpx.InvalidURL) as e:
            raise ProviderError("network", f"{conn.name}: cannot reach {where}: {type(e).__name__}") from None
        except httpx.TransportError as e:
            # After the request went out: the provider may have it, so only the retry policy sends it again.
            cut = streaming and isinstance(e, (httpx.ReadError, httpx.RemoteProtocolError))
            raise ProviderError("stream_cut" if cut else "network",
                                f"{conn.name}: the connection to {where} failed before the reply was complete: "
                                f"{type(e).__name__}") from None
        except httpx.HTTPError as e:
            raise ProviderError("invalid_response", f"{conn.name}: {type(e).__name__} from {where}") from None

    async def stream(self, connection: str, req: ChatRequest, opts: CallOptions,
                     deliver: Callable[[StreamDelta | BaseException], Awaitable[None]]) -> None:
        """Stream a reply, handing each delta to `deliver` as it arrives; ends by
        delivering a StreamDelta(done=True) or the CallFailed that stopped it.
        Attempts are retried only until the first text is delivered. Each
        attempt must finish within opts.timeout (the whole reply, not each read)."""
        conn = self._conns[connection]
        plan = opts.retry or RetryPlan.of(conn.config.retry)
        stats = metering.CallStats(calls=1)
        started = time.perf_counter()
        attempt = 0
        try:
            while True:
                attempt += 1
                delivered = False
                usage = StreamDelta()

                async def on_delta(delta: StreamDelta) -> None:
                    nonlocal delivered
                    if delta.tokens_in is not None:
                        usage.tokens_in = delta.tokens_in
                    if delta.tokens_out is not None:
                        usage.tokens_out = delta.tokens_out
                    usage.model = delta.model or usage.model
                    if delta.text:
                        delivered = True
                        await deliver(delta)

                permit = await conn.limiter.acquire(self._estimate(req))
                try:
                    try:
                        with anyio.fail_after(opts.timeout):
                            await self._stream_once(conn, req, opts, on_delta)
                    except TimeoutError:
                        raise ProviderError("timeout", f"{conn.name}: the streamed reply did not finish "
                                                       f"within {opts.timeout:g} s") from None
                    permit.settle(_used_tokens(usage.tokens_in, usage.tokens_out))
                except ProviderError as err:
                    permit.release()  # not held while backing off
                    # Text already delivered cannot be taken back, so such a stream is not retried.
                    if await self._retry_after_failure(conn, stats, plan, err, attempt, give_up=delivered):
                        continue
                    await deliver(self._failed(err, attempt))
                    return
                finally:
                    permit.release()
                stats.requests += 1
                done = Completion("", usage.model or req.model, usage.tokens_in, usage.tokens_out)
                self._meter(stats, conn, done, time.perf_counter() - started)
                await deliver(StreamDelta(tokens_in=usage.tokens_in, tokens_out=usage.tokens_out,
                                          model=done.model, done=True))
                return
        finally:
            self.metrics.record(opts.model_label, connection, stats)

    async def _retry_after_failure(self, conn: _Connection, stats: metering.CallStats, plan: RetryPlan,
                                   err: ProviderError, attempt: int, give_up: bool = False) -> bool:
        """Count a failed attempt; when another is allowed, back off and say so.
        A provider asking to wait longer than the connection's
        max_retry_after_ms ends the call now: waiting less would only be
        refused again, and waiting that long would stall the program."""
        stats.requests += 1
        if give_up or not err.retryable or attempt >= plan.max_attempts:
            stats.failures += 1
            return False
        cap = conn.config.retry.max_retry_after_ms / 1000
        if err.retry_after is not None and err.retry_after > cap:
            err.message += (f" (the provider asked to wait {err.retry_after:g} s, more than max_retry_after_ms "
                            f"allows: {cap:g} s; not retried)")
            stats.failures += 1
            return False
        stats.retries += 1
        await self.sleep(plan.delay(attempt, err.retry_after, self.rng))
        return True

    def _failed(self, err: ProviderError, attempts: int) -> CallFailed:
        # Providers echo what they were sent (a key in an error body, say).
        err.message = self.redactor.text(err.message)
        return CallFailed(err, attempts)

    async def _stream_once(self, conn: _Connection, req: ChatRequest, opts: CallOptions,
                           on_delta: Callable[[StreamDelta], Awaitable[None]]) -> None:
        if conn.mock is not None:
            for delta in conn.mock.stream(req, opts.model_label):
                await on_delta(delta)
            return
        assert conn.adapter is not None
        call = conn.adapter.build_request(req, conn.endpoint)
        async with self._post(conn, call, opts.timeout, streaming=True) as resp:
            parser = conn.adapter.StreamParser()
            lines = _sse_lines(resp, conn.name, conn.max_bytes, conn.idle_limit(opts.timeout))
            async with contextlib.aclosing(lines):
                async for line in lines:
                    for delta in parser.feed_line(line):
                        await on_delta(delta)
            for delta in parser.finish():
                await on_delta(delta)

    # ------------------------------------------------------------ helpers
    def _client(self, conn: _Connection) -> httpx.AsyncClient:
        if conn.client is None:
            n = conn.config.rate_limit.concurrent_requests or 100
            conn.client = httpx.AsyncClient(transport=_transport(n), timeout=httpx.Timeout(conn.config.timeout))
            # Provider APIs authenticate by header, never by cookie; httpx's cookie
            # jar parses every reply's headers into an email.Message (~30 us).
            conn.client._cookies = _NoCookies()
        return conn.client

    @staticmethod
    def _estimate(req: ChatRequest) -> int:
        return estimate_tokens([m.content for m in req.messages], req.max_tokens)

    def _meter(self, stats: metering.CallStats, conn: _Connection, done: Completion, seconds: float) -> None:
        tin, tout = done.tokens_in or 0, done.tokens_out or 0
        stats.tokens_in += tin
        stats.tokens_out += tout
        stats.latency_ms += seconds * 1000
        price = metering.cost(done.model, tin, tout, conn.config.pricing)
        if price is None:
            stats.unpriced_tokens += tin + tout
        else:
            stats.cost_usd += price

    async def aclose(self) -> None:
        for conn in self._conns.values():
            if conn.client is not None:
                client, conn.client = conn.client, None
                await client.aclose()


class _NoCookies(httpx.Cookies):
    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


def _transport(max_connections: int) -> httpx.AsyncBaseTransport:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # another anyio backend (trio): httpx's own transport
        return httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=max_connections))
    return AsyncioTransport(max_connections)


async def _read_body(resp: httpx.Response, limit: int, name: str, truncate: bool = False) -> bytes:
    """The body, at most `limit` bytes of it (decoded, so a compressed bomb
    counts at its real size). Past the limit: the first `limit` bytes when
    `truncate`, else a ProviderError("response_too_large"); the rest is never read."""
    declared = resp.headers.get("content-length", "")
    if declared.isdigit():
        if int(declared) <= limit and "content-encoding" not in resp.headers:
            return await resp.aread()  # the common case, in one read: the size is known and small enough
        if not truncate:
            raise _too_large(name, limit)
    parts: list[bytes] = []
    total = 0
    async for chunk in resp.aiter_bytes():
        total += len(chunk)
        if total > limit:
            if not truncate:
                raise _too_large(name, limit)
            parts.append(chunk[: len(chunk) - (total - limit)])
            break
        parts.append(chunk)
    return b"".join(parts)


def _too_large(name: str, limit: int) -> ProviderError:
    return ProviderError("response_too_large", f"{name}: the reply is larger than {limit} bytes "
                                               "(max_response_bytes)")


async def _sse_lines(resp: httpx.Response, name: str, limit: int, idle: float) -> AsyncIterator[str]:
    """The lines of an event stream, as text. The whole body may not exceed
    `limit` bytes, and a line that is an event (not blank, not a `:` comment)
    must come at least every `idle` seconds: keep-alive comments alone do
    not keep a stream alive."""
    chunks = resp.aiter_bytes()
    deadline = anyio.current_time() + idle
    pending = bytearray()  # appending to bytes would copy a long line over and over
    total = 0
    while True:
        with anyio.CancelScope(deadline=deadline) as scope:
            chunk = await anext(chunks, None)
        if scope.cancelled_caught:
            raise ProviderError("timeout", f"{name}: the stream sent no event for {idle:g} s")
        if chunk is None:
            break
        total += len(chunk)
        if total > limit:
            raise _too_large(name, limit)
        pending += chunk
        if b"\n" not in chunk and b"\r" not in chunk:
            continue
        lines = pending.splitlines(keepends=True)
        pending = bytearray() if lines[-1].endswith((b"\n", b"\r")) else lines.pop()
        for raw in lines:
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            if line and not line.startswith(":"):
                deadline = anyio.current_time() + idle
            yield line
    if pending:
        yield pending.decode("utf-8", "replace")


def _used_tokens(tokens_in: int | None, tokens_out: int | None) -> int | None:
    if tokens_in is None and tokens_out is None:
        return None
    return (tokens_in or 0) + (tokens_out or 0)


def _default_base_url(provider: str, adapter: Any) -> str:
    if provider == "ollama":
        return "http://localhost:11434/v1"
    if provider == "custom":
        return ""  # no default: the caller reports it with the connection's name
    return adapter.DEFAULT_BASE_URL


def _origin(url: str) -> str:
    """scheme://host:port only: URLs may carry credentials or query tokens."""
    try:
        u = httpx.URL(url)
        return f"{u.scheme}://{u.host}" + (f":{u.port}" if u.port else "")
    except Exception:
        return "the provider"
