"""The LALR tables, cached on disk so a run does not rebuild them (~1 s).

The cache is plain JSON, never a pickle: reading it cannot run code, whoever
wrote it. It still lives only where nobody else can write: the user's cache
directory (`$XDG_CACHE_HOME/concerto`, else `~/.cache/concerto`), created
0700, files 0600. Before a file is read, the directory and the file are
opened without following symlinks and checked through their open
descriptors (owned by the current user, not writable by group or others, a
regular file), so nothing can be swapped in between the check and the read.
A cache that fails any check is ignored and the tables are built in memory.
There is no fallback to a shared temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

_MAX_BYTES = 32 * 1024 * 1024
_UNSAFE_BITS = stat.S_IWGRP | stat.S_IWOTH


def cache_dir() -> Path | None:
    """Where the cache lives, or None when this platform has no owner checks."""
    if not hasattr(os, "getuid") or not hasattr(os, "O_NOFOLLOW"):
        return None
    base = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec: a relative value is invalid and must be ignored.
    root = Path(base) if os.path.isabs(base) else Path(os.path.expanduser("~")) / ".cache"
    return root / "concerto"


def cache_name(grammar: str, lark_version: str) -> str:
    digest = hashlib.sha256((lark_version + "\0" + grammar).encode("utf-8")).hexdigest()[:24]
    return f"grammar-{digest}.json"


def _safe(st: os.stat_result, want_dir: bool) -> bool:
    kind_ok = stat.S_ISDIR(st.st_mode) if want_dir else stat.S_ISREG(st.st_mode)
    return kind_ok and st.st_uid == os.getuid() and not st.st_mode & _UNSAFE_BITS


def _open_dir(directory: Path, create: bool) -> int | None:
    """An fd for `directory` if it is ours and private enough (creating it 0700 if asked)."""
    if create:
        try:
            directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            return None
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if _safe(os.fstat(fd), want_dir=True):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def read(directory: Path, name: str) -> dict[str, Any] | None:
    """The cached data, or None when it is missing or fails a check."""
    dfd = _open_dir(directory, create=False)
    if dfd is None:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
    except OSError:
        os.close(dfd)
        return None
    try:
        st = os.fstat(fd)
        if not _safe(st, want_dir=False) or st.st_size > _MAX_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(_MAX_BYTES + 1)
        return decode(raw)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    finally:
        os.close(fd)
        os.close(dfd)


def write(directory: Path, name: str, data: Any, check: Callable[[Any], bool]) -> bool:
    """Store data (atomically: a private temporary file renamed into place),
    if check(what a later read would return) holds."""
    try:
        payload = encode(data)
        if not check(decode(payload)):
            return False
    except (TypeError, ValueError, KeyError, AttributeError):
        return False
    dfd = _open_dir(directory, create=True)
    if dfd is None:
        return False
    tmp = f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
        try:
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(payload)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        return True
    except OSError:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        return False
    finally:
        os.close(dfd)


# Lark's serialized tables are JSON-shaped except for dicts with int keys and
# tuples; json turns those into string keys and lists. Lark's loader accepts
# lists for tuples and string keys for tokens, so `decode` only restores the
# int keys it looks up by number (memo ids, parser states) and the rules'
# `empty_indices` tuples; whoever writes the
# cache checks that what it loads back equals what it stored (write's `check`).
def encode(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


def decode(raw: bytes) -> Any:
    data = json.loads(raw)
    data["memo"] = {int(k): v for k, v in data["memo"].items()}
    for item in data["memo"].values():
        options = item.get("options")
        if isinstance(options, dict) and isinstance(options.get("empty_indices"), list):
            options["empty_indices"] = tuple(options["empty_indices"])
    tables = data["data"]["parser"]["parser"]
    tables["states"] = {int(k): v for k, v in tables["states"].items()}
    return data
