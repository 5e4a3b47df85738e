"""wol.send through a real hub and agent: the packet arrives byte-exact; above a read-only ceiling the agent refuses."""

from __future__ import annotations

import asyncio
import socket

from support_actions import ActionRig

from roost.core.capabilities import Ceiling

EXPECTED = b"\xff" * 6 + bytes.fromhex("00163e5a6b7c") * 16


async def test_wol_end_to_end(tmp_path):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    port = sock.getsockname()[1]
    rig = await ActionRig(tmp_path, {"wol": {"broadcast": "127.0.0.1", "port": port}}, grants=["network.wol.send"]).start()
    try:
        done = await rig.run("wol.send", {"mac": "00:16:3E:5A:6B:7C"})
        assert done.state == "succeeded" and done.result["mac"] == "00:16:3e:5a:6b:7c"
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 1024), 5)
        assert data == EXPECTED
        bad = await rig.run("wol.send", {"mac": "00:16:3e:5a:6b:7c", "broadcast": "attacker.example"})
        assert bad.state == "refused" and "IP address" in bad.error
        rig.rt.settings.ceiling = Ceiling(mode="read-only")
        above = await rig.run("wol.send", {"mac": "00:16:3e:5a:6b:7c"})
        assert above.state == "refused" and "network.wol.send is above this host's ceiling" in above.error
    finally:
        await rig.close()
        sock.close()
