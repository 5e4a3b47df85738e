"""A real mosquitto broker on a free loopback port, for the tests of everything that speaks MQTT (the Home Assistant bridge, the MQTT receiver)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from support import free_port, need


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


@pytest.fixture
def mosquitto(tmp_path):
    need(shutil.which("mosquitto") is not None, "mosquitto (apt-get install mosquitto)")
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()
