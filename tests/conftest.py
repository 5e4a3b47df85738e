"""Fixtures shared by Roost's whole test suite."""

import atexit
import os
import shutil
import tempfile

# Every hub and agent a test starts (in-process or as a subprocess) announces
# and browses zeroconf on loopback only, never on this machine's real
# interfaces. Tests that need discovery elsewhere run inside their own
# network namespace and set the interfaces explicitly.
os.environ["ROOST_DISCOVERY_INTERFACES"] = "127.0.0.1"

# A running hub records where it runs in $XDG_RUNTIME_DIR/roost for the
# commands on its host; the hubs of a test run record themselves in a
# directory of the run's own, never where the user's real hub is looked for.
os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="roost-test-runtime-")
atexit.register(shutil.rmtree, os.environ["XDG_RUNTIME_DIR"], True)
