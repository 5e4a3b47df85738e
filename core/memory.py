"""Giving memory back to the system after a burst: glibc keeps freed heap pages unless asked to return them."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)

_trim: Callable[[int], int] | None = None
_looked = False
_M_ARENA_MAX = -8  # glibc's mallopt() parameter


def _libc() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


def limit_arenas(count: int) -> bool:
    """Let glibc's malloc keep at most ``count`` arenas (``mallopt(M_ARENA_MAX)``); call before starting threads.

    glibc gives each thread that allocates its own arena, and each keeps the
    pages it once used: for the agent's few worker threads (SQLite, collectors)
    that is megabytes of resident memory for no speed the agent needs. False
    where there is no glibc (musl has no arenas to limit).
    """
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    return bool(mallopt is not None and mallopt(_M_ARENA_MAX, count))


def release_memory() -> bool:
    """Return the free pages of the C heap to the system (``malloc_trim(0)``); False where there is no glibc.

    Python gives freed objects back to malloc, but glibc keeps the pages of a
    heap that grew in a burst (thousands of parsed reports in flight) for
    reuse, so the process stays at its peak resident size until trimmed.
    """
    global _trim, _looked
    if not _looked:
        _looked = True
        _trim = getattr(_libc(), "malloc_trim", None)
        if _trim is None:  # musl (Alpine) has no malloc_trim, and gives memory back by itself
            _LOGGER.debug("no malloc_trim in this C library; memory is returned by the allocator itself")
    if _trim is None:
        return False
    _trim(0)
    return True
