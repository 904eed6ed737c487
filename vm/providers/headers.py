"""How long a provider asked us to wait, from its reply headers.

Order of preference: `retry-after-ms` (OpenAI), `Retry-After` (seconds or an
HTTP date), then the providers' rate-limit reset headers: OpenAI's
`x-ratelimit-reset-{requests,tokens}` ("1s", "6m0s", "20ms") and Anthropic's
`anthropic-ratelimit-*-reset` (RFC 3339 times). For reset headers, a limit
whose `remaining` is "0" is the one that matters; without that hint the
longest reset is used. Garbage values are ignored, never raised.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from datetime import datetime, timezone

_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_OPENAI_RESETS = ("requests", "tokens")
_ANTHROPIC_RESETS = ("requests", "tokens", "input-tokens", "output-tokens")


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    try:
        return {str(k).lower(): str(v) for k, v in headers.items()}
    except Exception:
        return {}


def go_duration(text: str) -> float | None:
    """"1h2m3.5s" / "6m0s" / "20ms" -> seconds."""
    text = text.strip()
    if not text:
        return None
    pos, total = 0, 0.0
    for m in _GO_DURATION.finditer(text):
        if m.start() != pos:
            return None
        value, unit = float(m.group(1)), m.group(2)
        total += value * {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}[unit]
        pos = m.end()
    return total if pos == len(text) else None


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 and value == value and value != float("inf") else None


def _until(text: str, now: datetime) -> float | None:
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    h = _lower(headers)
    now = now or datetime.now(timezone.utc)
    if "retry-after-ms" in h:
        ms = _seconds(h["retry-after-ms"])
        if ms is not None:
            return ms / 1000
    if "retry-after" in h:
        value = h["retry-after"].strip()
        secs = _seconds(value)
        if secs is not None:
            return secs
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            return max(0.0, (when - now).total_seconds())
    resets: dict[str, float] = {}
    exhausted: list[float] = []
    for kind in _OPENAI_RESETS:
        value = h.get(f"x-ratelimit-reset-{kind}")
        secs = go_duration(value) if value else None
        if secs is not None:
            resets[kind] = secs
            if h.get(f"x-ratelimit-remaining-{kind}", "").strip() == "0":
                exhausted.append(secs)
    for kind in _ANTHROPIC_RESETS:
        value = h.get(f"anthropic-ratelimit-{kind}-reset")
        secs = _until(value, now) if value else None
        if secs is not None:
            resets["a-" + kind] = secs
            if h.get(f"anthropic-ratelimit-{kind}-remaining", "").strip() == "0":
                exhausted.append(secs)
    if exhausted:
        return max(exhausted)
    return max(resets.values()) if resets else None
