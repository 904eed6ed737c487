"""The connection manager: the one gate every model call passes (spec 17).

For each connection it owns the provider adapter, one pooled
httpx.AsyncClient, the rate limiter and the retry policy. A call:

    acquire a permit (concurrency slot, then the request/token windows)
    -> send -> parse -> settle the token estimate -> release
    on a retryable failure: back off (exponential with jitter, at least what
    the provider's Retry-After / reset headers asked) and go again

Metering happens here too, so nothing reaches a provider unrecorded.
API keys are read from the environment when the manager is built and live
only in the Endpoint handed to adapters; no message here ever includes one.
"""

from __future__ import annotations

import asyncio
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
from concerto.vm.connection_config import ConfigError, ConnectionOverride, RetryPlan
from concerto.vm.http_pool import AsyncioTransport
from concerto.vm.providers.base import ChatRequest, Completion, Endpoint, ProviderError, StreamDelta
from concerto.vm.providers.mock import MockProvider
from concerto.vm.ratelimit import RateLimiter, estimate_tokens

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
        adapter = _adapter(provider)
        base_url = override.base_url or cfg.base_url or _default_base_url(provider, adapter)
        if not base_url:
            raise ConfigError(f"connection `{name}`: a `custom` connection needs base_url")
        endpoint = Endpoint(base_url, key, dict(cfg.headers), cfg.organization, cfg.project)
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
                    if await self._retry_after_failure(stats, plan, err, attempt):
                        continue
                    raise CallFailed(err, attempt) from None
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
        client = self._client(conn)
        try:
            resp = await client.post(call.url, content=msgspec.json.encode(call.body), headers=call.headers,
                                     timeout=opts.timeout)
        except httpx.TimeoutException:
            raise ProviderError("timeout", f"{conn.name}: no reply within {opts.timeout:g} s") from None
        except (httpx.TransportError, httpx.InvalidURL) as e:
            raise ProviderError("network", f"{conn.name}: cannot reach {_origin(call.url)}: {type(e).__name__}") from None
        except httpx.HTTPError as e:
            raise ProviderError("invalid_response", f"{conn.name}: {type(e).__name__} from {_origin(call.url)}") from None
        if resp.status_code >= 400:
            raise conn.adapter.classify_error(resp.status_code, resp.headers, resp.content)
        return conn.adapter.reply_parser(req)(resp.status_code, resp.headers, resp.content)

    async def stream(self, connection: str, req: ChatRequest, opts: CallOptions,
                     deliver: Callable[[StreamDelta | BaseException], Awaitable[None]]) -> None:
        """Stream a reply, handing each delta to `deliver` as it arrives; ends by
        delivering a StreamDelta(done=True) or the CallFailed that stopped it.
        Attempts are retried only until the first text is delivered."""
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
                permit = await conn.limiter.acquire(self._estimate(req))
                try:
                    async for delta in self._stream_once(conn, req, opts):
                        if delta.tokens_in is not None:
                            usage.tokens_in = delta.tokens_in
                        if delta.tokens_out is not None:
                            usage.tokens_out = delta.tokens_out
                        usage.model = delta.model or usage.model
                        if delta.text:
                            delivered = True
                            await deliver(delta)
                    permit.settle(_used_tokens(usage.tokens_in, usage.tokens_out))
                except ProviderError as err:
                    permit.release()  # not held while backing off
                    # Text already delivered cannot be taken back, so such a stream is not retried.
                    if await self._retry_after_failure(stats, plan, err, attempt, give_up=delivered):
                        continue
                    await deliver(CallFailed(err, attempt))
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

    async def _retry_after_failure(self, stats: metering.CallStats, plan: RetryPlan, err: ProviderError,
                                   attempt: int, give_up: bool = False) -> bool:
        """Count a failed attempt; when another is allowed, back off and say so."""
        stats.requests += 1
        if give_up or not err.retryable or attempt >= plan.max_attempts:
            stats.failures += 1
            return False
        stats.retries += 1
        await self.sleep(plan.delay(attempt, err.retry_after, self.rng))
        return True

    async def _stream_once(self, conn: _Connection, req: ChatRequest, opts: CallOptions) -> AsyncIterator[StreamDelta]:
        if conn.mock is not None:
            for delta in conn.mock.stream(req, opts.model_label):
                yield delta
            return
        assert conn.adapter is not None
        call = conn.adapter.build_request(req, conn.endpoint)
        client = self._client(conn)
        timeout = httpx.Timeout(opts.timeout)
        try:
            async with client.stream("POST", call.url, content=msgspec.json.encode(call.body),
                                     headers=call.headers, timeout=timeout) as resp:
                if resp.status_code >= 400:
                    body = await resp.aread()
                    raise conn.adapter.classify_error(resp.status_code, resp.headers, body)
                parser = conn.adapter.StreamParser()
                async for line in resp.aiter_lines():
                    for delta in parser.feed_line(line):
                        yield delta
                for delta in parser.finish():
                    yield delta
        except httpx.TimeoutException:
            raise ProviderError("timeout", f"{conn.name}: no reply within {opts.timeout:g} s") from None
        except httpx.TransportError as e:
            raise ProviderError("stream_cut" if isinstance(e, (httpx.ReadError, httpx.RemoteProtocolError)) else "network",
                                f"{conn.name}: connection to {_origin(call.url)} failed: {type(e).__name__}") from None

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
