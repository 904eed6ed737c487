"""std::crypto — hashing and identifiers (spec 19). Strings are hashed as UTF-8."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from concerto.stdlib.registry import REGISTRY, NativeContext
from concerto.stdlib.support import want_count, want_str


@REGISTRY.function("std::crypto::sha256", 1)
def sha256(ctx: NativeContext, text: str) -> str:
    return hashlib.sha256(want_str(text, "crypto::sha256").encode("utf-8")).hexdigest()


@REGISTRY.function("std::crypto::md5", 1)
def md5(ctx: NativeContext, text: str) -> str:
    # Not for security; usedforsecurity=False keeps FIPS-mode Pythons working.
    return hashlib.md5(want_str(text, "crypto::md5").encode("utf-8"), usedforsecurity=False).hexdigest()


@REGISTRY.function("std::crypto::uuid", 0)
def uuid_(ctx: NativeContext) -> str:
    return str(uuid.uuid4())


@REGISTRY.function("std::crypto::random_bytes", 1)
def random_bytes(ctx: NativeContext, n: int) -> str:
    """`n` cryptographically random bytes as 2n lowercase hex digits."""
    return secrets.token_hex(want_count(n, "crypto::random_bytes"))
