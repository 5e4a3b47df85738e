"""A real mosquitto on a free loopback port with its own config and log, for the MQTT tests."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from support import free_port


class Mosquitto:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        conf = self.tmp / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\nuser root\n")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=open(self.tmp / "mosquitto.log", "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                assert self.proc.poll() is None, (self.tmp / "mosquitto.log").read_text()
                assert time.monotonic() < deadline, "mosquitto did not open its port"
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
