"""Fixtures shared by Roost's whole test suite."""

import os

# Every hub and agent a test starts (in-process or as a subprocess) announces
# and browses zeroconf on loopback only, never on this machine's real
# interfaces. Tests that need discovery elsewhere run inside their own
# network namespace and set the interfaces explicitly.
os.environ["ROOST_DISCOVERY_INTERFACES"] = "127.0.0.1"
