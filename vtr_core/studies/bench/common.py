"""What every benchmark suite shares: timing, percentiles, the machine record, JSON output.

Kept apart from the suites so each suite, and the renderer of docs/PERFORMANCE.md, reads its
figures the same way (p50/p99 in milliseconds, HNSW's settings judged against one recall target).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vtr_core.storage import atomic_write_bytes

HNSW_EF_SEARCH = (64, 128, 256, 512, 1024)  # HNSW32 search breadths: the speed / recall trade-off
HNSW_RECALL_TARGET = 0.95


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds (numpy's linear interpolation)."""
    values = np.asarray(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(values, 50)), 4), "p99_ms": round(float(np.percentile(values, 99)), 4)}


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1, sync: Callable[[], None] | None = None) -> list[float]:
    """Wall times of `fn`; `sync` waits for queued GPU work so each time covers the whole call."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        if sync:
            sync()
        out.append(time.perf_counter() - started)
    return out


def device_sync(device: str) -> Callable[[], None] | None:
    return torch.cuda.synchronize if device.startswith("cuda") else None


def machine() -> dict:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def recall_at(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Share of the true top-k found in each row's top-k, averaged over rows."""
    hits = [len(set(f[:k].tolist()) & set(t[:k].tolist())) / k for f, t in zip(found, truth)]
    return float(np.mean(hits))


def best_hnsw(row: dict) -> tuple[str, dict] | None:
    """The fastest HNSW setting that reaches recall@10 0.95, else the most accurate one."""
    settings = (row.get("coarse_hnsw") or {}).get("by_efSearch", {})
    if not settings:
        return None
    good = [(ef, s) for ef, s in settings.items() if s["recall@10"] >= HNSW_RECALL_TARGET]
    return min(good, key=lambda e: e[1]["p50_ms"]) if good else max(settings.items(), key=lambda e: e[1]["recall@10"])


def write_json(result: object, path: str | Path) -> None:
    atomic_write_bytes(path, (json.dumps(asdict(result) if hasattr(result, "__dataclass_fields__") else result,
                                        indent=1) + "\n").encode())
