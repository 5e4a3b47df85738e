"""Giving memory back to the system after a burst: glibc keeps freed heap pages unless asked to return them."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)

_trim: Callable[[int], int] | None = None
_looked = False


def release_memory() -> bool:
    """Return the free pages of the C heap to the system (``malloc_trim(0)``); False where there is no glibc.

    Python gives freed objects back to malloc, but glibc keeps the pages of a
    heap that grew in a burst (thousands of parsed reports in flight) for
    reuse, so the process stays at its peak resident size until trimmed.
    """
    global _trim, _looked
    if not _looked:
        _looked = True
        if sys.platform.startswith("linux"):
            import ctypes

            try:
                libc = ctypes.CDLL("libc.so.6", use_errno=True)
                _trim = libc.malloc_trim
                _trim.argtypes = [ctypes.c_size_t]
                _trim.restype = ctypes.c_int
            except (OSError, AttributeError):  # musl (Alpine) has no malloc_trim, and gives memory back by itself
                _LOGGER.debug("no malloc_trim in this C library; memory is returned by the allocator itself")
    if _trim is None:
        return False
    _trim(0)
    return True
