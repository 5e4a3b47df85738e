"""The wire protocol's fast report check agrees with its schema on what it accepts, what it refuses and what it fills in."""

from __future__ import annotations

import copy
import json
import time

import pytest
import voluptuous as vol

from roost.core import protocol

GOOD = {
    "v": 1,
    "type": "report",
    "node_id": "nabc123",
    "seq": 7,
    "collected_at": time.time(),
    "interval": 10,
    "spool_dropped": 0,
    "integrations": [{"domain": "linux_host", "state": "loaded", "reason": "", "since": 1.5}],
    "data": {"linux_host": {"cpu": {"percent": 3.5}}},
    "metrics": {"linux_host.cpu_percent": 3, "linux_host.disk_used_percent[/srv]": 41.5},
}


def variants():
    yield "as is", {}
    yield "no optional keys", {"interval": None, "spool_dropped": None, "integrations": None, "data": None, "metrics": None}
    yield "status without reason", {"integrations": [{"domain": "x", "state": "loaded"}]}
    yield "bool seq", {"seq": True}
    yield "zero seq", {"seq": 0}
    yield "string seq", {"seq": "7"}
    yield "float seq", {"seq": 7.0}
    yield "negative time", {"collected_at": -1}
    yield "string time", {"collected_at": "12"}
    yield "huge time", {"collected_at": 2**40}
    yield "tiny interval", {"interval": 0.01}
    yield "bad node id", {"node_id": "n/../x"}
    yield "long node id", {"node_id": "n" * 65}
    yield "negative dropped", {"spool_dropped": -1}
    yield "integrations not a list", {"integrations": {"a": 1}}
    yield "status not a dict", {"integrations": ["x"]}
    yield "status without state", {"integrations": [{"domain": "x"}]}
    yield "reason not str", {"integrations": [{"domain": "x", "state": "y", "reason": 5}]}
    yield "bad data key", {"data": {"Linux": {}}}
    yield "data not a dict", {"data": []}
    yield "metric string", {"metrics": {"a": "1"}}
    yield "metric bool", {"metrics": {"a": True}}
    yield "metric nan", {"metrics": {"a": float("nan")}}
    yield "metric inf", {"metrics": {"a": float("inf")}}
    yield "metric empty name", {"metrics": {"": 1}}
    yield "metric long name", {"metrics": {"x" * 201: 1}}
    yield "too many metrics", {"metrics": {f"m{i}": i for i in range(protocol.MAX_METRICS_PER_REPORT + 1)}}
    yield "unknown key", {"extra": 1}


@pytest.mark.parametrize("name,change", list(variants()), ids=[n for n, _ in variants()])
def test_fast_path_and_schema_agree(name, change):
    message = copy.deepcopy(GOOD)
    for key, value in change.items():
        if value is None:
            message.pop(key, None)
        else:
            message[key] = value
    try:
        expected = protocol.REPORT_SCHEMA(copy.deepcopy(message))
    except vol.Invalid:
        expected = None
    fast = protocol.fast_report(copy.deepcopy(message))
    if expected is None:
        assert fast is None, f"{name}: the fast path accepted what the schema refuses"
        with pytest.raises(protocol.ProtocolError):
            protocol.parse(json.dumps(message, allow_nan=True), protocol.AGENT_MESSAGES)
    else:
        parsed = protocol.parse(json.dumps(message), protocol.AGENT_MESSAGES)
        assert parsed == expected, name
        if name in ("as is", "no optional keys", "status without reason"):
            assert fast is not None, f"{name}: an ordinary report should take the fast path"
        if fast is not None:
            assert fast == expected and all(type(v) is float for v in fast["metrics"].values())
