"""The agent's spool: ordered, bounded, durable across restarts."""

from __future__ import annotations

from roost.agent.spool import Spool


async def test_reports_come_back_in_order_and_go_once_acknowledged(tmp_path):
    spool = Spool(tmp_path / "spool.db", max_reports=100)
    await spool.open()
    seqs = [await spool.append(float(i), {"n": i}) for i in range(5)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    rows = await spool.after(0, 3)
    assert [r.body["n"] for r in rows] == [0, 1, 2]
    assert [r.body["n"] for r in await spool.after(rows[-1].seq, 10)] == [3, 4]
    assert await spool.delete_upto(seqs[2]) == 3
    assert len(spool) == 2
    assert [r.body["n"] for r in await spool.after(0, 10)] == [3, 4]
    await spool.close()


async def test_sequence_and_epoch_survive_a_restart_and_never_go_back(tmp_path):
    spool = Spool(tmp_path / "spool.db", max_reports=100)
    await spool.open()
    epoch = spool.epoch
    last = [await spool.append(1.0, {}) for _ in range(3)][-1]
    await spool.delete_upto(last)  # all acknowledged: the table is empty
    await spool.close()
    again = Spool(tmp_path / "spool.db", max_reports=100)
    await again.open()
    assert again.epoch == epoch
    assert await again.append(2.0, {}) == last + 1
    assert len(again) == 1
    await again.close()
    fresh = Spool(tmp_path / "other.db", max_reports=100)
    await fresh.open()
    assert fresh.epoch != epoch
    await fresh.close()


async def test_a_full_spool_drops_the_oldest_and_counts_it(tmp_path):
    spool = Spool(tmp_path / "spool.db", max_reports=10)
    await spool.open()
    for i in range(25):
        await spool.append(float(i), {"n": i})
    assert len(spool) == 10 and spool.dropped == 15
    assert [r.body["n"] for r in await spool.after(0, 100)] == list(range(15, 25))
    await spool.close()
    again = Spool(tmp_path / "spool.db", max_reports=10)
    await again.open()
    assert again.dropped == 15 and len(again) == 10
    await again.close()
