"""std::crypto — hashing and identifiers (spec 19). Strings are hashed as UTF-8."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

from concerto.stdlib.registry import REGISTRY, NativeContext
from concerto.stdlib.support import string_check, want_count, want_str
from concerto.vm.interrupts import poll

# Characters encoded and hashed per step: a 100-million-character String
# takes ~150 ms in one call, a few ms a step here.
_STEP = 1 << 22


def _digest(hasher: Any, text: str) -> str:
    # A lone surrogate (from JSON such as "\ud800") has no UTF-8 form;
    # surrogatepass encodes it as its three bytes instead of failing. Python
    # encodes each surrogate alone, paired or not, so cutting the text
    # anywhere gives the same bytes.
    for lo in range(0, len(text), _STEP):
        poll()
        hasher.update(text[lo:lo + _STEP].encode("utf-8", "surrogatepass"))
    return hasher.hexdigest()


@REGISTRY.function("std::crypto::sha256", 1)
def sha256(ctx: NativeContext, text: str) -> str:
    return _digest(hashlib.sha256(), want_str(text, "crypto::sha256"))


@REGISTRY.function("std::crypto::md5", 1)
def md5(ctx: NativeContext, text: str) -> str:
    # Not for security; usedforsecurity=False keeps FIPS-mode Pythons working.
    return _digest(hashlib.md5(usedforsecurity=False), want_str(text, "crypto::md5"))


@REGISTRY.function("std::crypto::uuid", 0)
def uuid_(ctx: NativeContext) -> str:
    return str(uuid.uuid4())


@REGISTRY.function("std::crypto::random_bytes", 1)
def random_bytes(ctx: NativeContext, n: int) -> str:
    """`n` cryptographically random bytes as 2n lowercase hex digits."""
    string_check(2 * want_count(n, "crypto::random_bytes"), "crypto::random_bytes")
    return secrets.token_hex(n)
