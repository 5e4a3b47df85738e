"""LVM thin pools from ``lvs --reportformat json``: data and metadata usage, the two ways a thin pool fills up."""

from __future__ import annotations

import json
import subprocess
from typing import Any

LVS_ARGS = ["--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_name,lv_name,lv_attr,lv_size,data_percent,metadata_percent,segtype"]
DATA_WARNING_PERCENT = 90.0
METADATA_WARNING_PERCENT = 80.0


def _float(value: Any) -> float | None:
    try:
        return float(str(value).strip())
    except (TypeError, ValueError):
        return None


def parse_lvs(text: str) -> list[dict[str, Any]]:
    """The thin pools in an lvs JSON report."""
    doc = json.loads(text)
    pools = []
    for report in doc.get("report") or []:
        for lv in report.get("lv") or []:
            if not isinstance(lv, dict):
                continue
            attr = str(lv.get("lv_attr") or "")
            if lv.get("segtype") != "thin-pool" and not attr.startswith("t"):
                continue
            pool: dict[str, Any] = {"name": f"{lv.get('vg_name')}/{lv.get('lv_name')}", "attr": attr}
            for key, out_key in (("lv_size", "size_bytes"), ("data_percent", "data_percent"), ("metadata_percent", "metadata_percent")):
                value = _float(lv.get(key))
                if value is not None:
                    pool[out_key] = value
            pools.append(pool)
    return pools


def collect(lvs: str, timeout: float) -> dict[str, Any] | None:
    try:
        proc = subprocess.run([lvs, *LVS_ARGS], capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired:
        return {"thin_pools": [], "error": f"lvs did not answer within {timeout:g} s"}
    if proc.returncode != 0:
        return {"thin_pools": [], "error": (proc.stderr.strip().splitlines() or ["lvs failed"])[-1][:300]}
    try:
        return {"thin_pools": parse_lvs(proc.stdout)}
    except ValueError as err:
        return {"thin_pools": [], "error": f"lvs printed no JSON: {err}"}


def problems(pool: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    data, meta = pool.get("data_percent"), pool.get("metadata_percent")
    if isinstance(data, float) and data >= DATA_WARNING_PERCENT:
        out.append(("critical" if data >= 98 else "warning", f"thin pool {pool['name']} data is {data:g} % full"))
    if isinstance(meta, float) and meta >= METADATA_WARNING_PERCENT:
        out.append(("critical" if meta >= 95 else "warning", f"thin pool {pool['name']} metadata is {meta:g} % full"))
    return out
