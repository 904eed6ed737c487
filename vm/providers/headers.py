"""Header helpers shared by the provider adapters.

retry_after_seconds(): how long a provider asked us to wait, read from its
reply headers. Order of preference:

1. `retry-after-ms` (OpenAI): milliseconds, may be fractional;
2. `Retry-After` (RFC 9110): delay in seconds, or an HTTP date;
3. the providers' rate-limit reset headers:
   * OpenAI `x-ratelimit-reset-{requests,tokens}`, Go durations ("1s",
     "6m0s", "20ms", "1h2m3.5s");
   * Anthropic `anthropic-ratelimit-{requests,tokens,input-tokens,
     output-tokens}-reset`, RFC 3339 times (seconds until then, floored at 0).
   If the matching `...-remaining` header of some limit is "0", that limit is
   the one blocking us, so its reset is used (the longest, if several are
   exhausted). Otherwise the longest reset present is used: waiting for the
   longest one is never too short.

Lookups are case-insensitive (an httpx.Headers or a plain dict with any case
works) and a garbage value is ignored, never raised.

merge_headers(): our headers plus a connection's configured ones, without the
same header twice under different spellings.
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone

# One "<number><unit>" term of a Go duration; "ms"/"us"/"µs"/"ns" are listed
# before "m"/"s" so the regex never splits "ms" into "m" + "s".
_GO_TERM = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|μs|ns|h|m|s)")
_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9}
_OPENAI_LIMITS = ("requests", "tokens")
_ANTHROPIC_LIMITS = ("requests", "tokens", "input-tokens", "output-tokens")


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    """A lower-cased copy; anything unreadable counts as no headers at all."""
    try:
        return {str(k).lower(): str(v).strip() for k, v in headers.items()}
    except Exception:  # a broken mapping must not turn an HTTP error into a crash
        return {}


def _utc(when: datetime) -> datetime:
    # Naive datetimes are taken as UTC so that aware/naive subtraction never raises.
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when


def _non_negative(text: str) -> float | None:
    """A finite, non-negative number, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def go_duration(text: str) -> float | None:
    """Seconds in a Go duration string ("1h2m3.5s", "6m0s", "20ms"); a bare
    number is taken as seconds. None for anything else."""
    text = text.strip()
    if not text:
        return None
    plain = _non_negative(text)
    if plain is not None:
        return plain
    pos, total = 0, 0.0
    for term in _GO_TERM.finditer(text):
        if term.start() != pos:
            return None  # junk between terms
        total += float(term.group(1)) * _GO_UNITS[term.group(2)]
        pos = term.end()
    return total if pos == len(text) and pos > 0 else None


def _seconds_until_iso(text: str, now: datetime) -> float | None:
    """Seconds from `now` until an RFC 3339 time, floored at 0."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (_utc(when) - now).total_seconds())


def _seconds_until_http_date(text: str, now: datetime) -> float | None:
    """Seconds from `now` until an HTTP date ("Wed, 21 Oct 2015 07:28:00 GMT")."""
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # older Pythons returned None for unparsable dates
        return None
    return max(0.0, (_utc(when) - now).total_seconds())


def _retry_after(h: dict[str, str], now: datetime) -> float | None:
    if "retry-after-ms" in h:
        ms = _non_negative(h["retry-after-ms"])
        if ms is not None:
            return ms / 1000.0
    if "retry-after" in h:
        value = h["retry-after"]
        seconds = _non_negative(value)
        if seconds is not None:
            return seconds
        return _seconds_until_http_date(value, now)
    return None


def _reset_wait(h: dict[str, str], now: datetime) -> float | None:
    """The wait implied by the rate-limit reset headers (see the module doc)."""
    resets: list[float] = []
    exhausted: list[float] = []

    def note(seconds: float | None, remaining: str | None) -> None:
        if seconds is None:
            return
        resets.append(seconds)
        if remaining == "0":
            exhausted.append(seconds)

    for limit in _OPENAI_LIMITS:
        value = h.get(f"x-ratelimit-reset-{limit}")
        note(go_duration(value) if value else None, h.get(f"x-ratelimit-remaining-{limit}"))
    for limit in _ANTHROPIC_LIMITS:
        value = h.get(f"anthropic-ratelimit-{limit}-reset")
        note(_seconds_until_iso(value, now) if value else None, h.get(f"anthropic-ratelimit-{limit}-remaining"))
    if exhausted:
        return max(exhausted)
    return max(resets) if resets else None


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the provider asked us to wait, or None when it said nothing usable."""
    h = _lowered(headers)
    current = _utc(now) if now is not None else datetime.now(timezone.utc)
    explicit = _retry_after(h, current)
    return explicit if explicit is not None else _reset_wait(h, current)


def merge_headers(ours: Mapping[str, str], theirs: Mapping[str, str]) -> dict[str, str]:
    """`ours` plus `theirs`; on a name clash (in any case) the configured header
    wins, and is sent once: httpx would otherwise send both spellings."""
    taken = {name.lower() for name in theirs}
    merged = {name: value for name, value in ours.items() if name.lower() not in taken}
    merged.update(theirs)
    return merged
