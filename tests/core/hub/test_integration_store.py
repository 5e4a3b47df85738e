"""ctx.store: what an integration's hub half keeps between runs, in the hub's real SQLite store."""

from __future__ import annotations

import pytest

from roost.core.hub.app import HUB_KEY
from roost.core.hub.integrations import MAX_STORE_VALUE, HubStore
from roost.core.store.sqlite import SQLiteStore


def ctx_of(client, domain: str):
    [integ] = [i for i in client.app[HUB_KEY].manager.integrations.values() if i.domain == domain]
    return integ.context


async def test_each_loaded_hub_half_gets_its_own_store(client) -> None:
    linux = ctx_of(client, "linux_host").store
    docker = ctx_of(client, "docker").store
    await linux.put("manifest", {"targets": [{"id": "usb1", "min_free": 10}]})
    await docker.put("manifest", ["something else"])
    assert await linux.get("manifest") == {"targets": [{"id": "usb1", "min_free": 10}]}
    assert await docker.get("manifest") == ["something else"]  # one namespace per domain
    assert await linux.get("missing") is None
    assert await linux.delete("manifest") is True
    assert await linux.delete("manifest") is False
    assert await linux.get("manifest") is None
    assert await docker.get("manifest") == ["something else"]


async def test_values_outlive_the_hub(tmp_path) -> None:
    path = tmp_path / "hub.db"

    class Hub:  # what HubStore needs of the hub: its store
        def __init__(self, store) -> None:
            self.store = store

    store = SQLiteStore(path)
    await store.open()
    await HubStore(Hub(store), "storage").put("node/n1", {"targets": ["a"]})
    await HubStore(Hub(store), "storage").put("node/n1", {"targets": ["b"]})  # replaced, not added
    await store.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        assert await HubStore(Hub(store), "storage").items() == {"node/n1": {"targets": ["b"]}}
        assert await HubStore(Hub(store), "backup").items() == {}
    finally:
        await store.close()


async def test_items_take_the_prefix_literally(client) -> None:
    store = ctx_of(client, "linux_host").store
    for key in ("policy/a", "policy/b", "policy_x", "policyZ", "other"):
        await store.put(key, key)
    assert list(await store.items("policy/")) == ["policy/a", "policy/b"]
    # LIKE wildcards in a prefix match only themselves.
    assert list(await store.items("policy_")) == ["policy_x"]
    assert list(await store.items("%")) == []
    assert len(await store.items()) == 5


@pytest.mark.parametrize("key", ["", "k" * 201, None, 7, ["a"]])
async def test_a_bad_key_is_refused(client, key) -> None:
    store = ctx_of(client, "linux_host").store
    with pytest.raises(ValueError, match="1 to 200 characters"):
        await store.put(key, 1)
    with pytest.raises(ValueError, match="1 to 200 characters"):
        await store.get(key)


async def test_a_value_that_is_not_json_or_too_big_is_refused_and_the_old_one_kept(client) -> None:
    store = ctx_of(client, "linux_host").store
    await store.put("k", {"ok": True})
    with pytest.raises(ValueError, match="cannot be kept as JSON"):
        await store.put("k", {"when": object()})
    with pytest.raises(ValueError, match="cannot be kept as JSON"):
        await store.put("k", float("nan"))
    with pytest.raises(ValueError, match="at most 1048576"):
        await store.put("k", "x" * MAX_STORE_VALUE)
    assert await store.get("k") == {"ok": True}


async def test_a_value_returned_is_a_copy(client) -> None:
    store = ctx_of(client, "linux_host").store
    await store.put("k", {"list": [1]})
    got = await store.get("k")
    got["list"].append(2)
    assert await store.get("k") == {"list": [1]}
