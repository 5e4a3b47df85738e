"""Roost's kernel: shared by the hub and the agent; the one import an integration author needs."""

import pluggy

from .const import HOOK_NAMESPACE, __version__

hookimpl = pluggy.HookimplMarker(HOOK_NAMESPACE)

__all__ = ["hookimpl", "__version__"]
