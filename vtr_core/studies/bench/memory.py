"""The memory suite: bytes per video of each stored representation of an index, the explorer's
resident memory at rest, and the process's peak RSS (which the indexing suite reports too)."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np

from vtr_core.index import VideoIndex
from vtr_core.studies.bench.common import percentiles


def index_memory(index_dir: str | Path) -> dict:
    """Bytes per video of each stored part of an index, from its files on disk."""
    index = VideoIndex.open(index_dir)
    root = Path(index_dir) / "segments"
    parts: dict[str, int] = {}
    rows = 0
    for segment in index.segment_names:
        folder = root / segment
        rows += len(np.load(folder / "coarse.npy", mmap_mode="r"))
        for file in folder.iterdir():  # strips.npy (offsets) and strips.bin count as "strips"
            if file.is_file():
                parts[file.stem] = parts.get(file.stem, 0) + file.stat().st_size
    total = sum(p.stat().st_size for p in Path(index_dir).rglob("*") if p.is_file())
    return {"videos": len(index), "stored_rows": rows, "bytes_per_video": {k: round(v / max(1, rows)) for k, v in sorted(parts.items())},
            "index_bytes": total, "backbone": index.header.backbone_id, "frames": index.header.num_frames}


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def current_rss_bytes() -> int:
    """Resident set size now (Linux /proc), for memory at rest rather than at the peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return peak_rss_bytes()


def explorer_at_rest(index_dir: str | Path, device: str = "cpu", repeats: int = 16) -> dict:
    """RSS of the explorer's service after every method has answered one query (what the app
    holds between requests: backbone, heads, video states, search structures), and each method's
    end-to-end latency through the query service (encode + stage 1 + re-rank + hits), `repeats`
    queries after that first one."""
    from vtr_core.explorer.service import Explorer

    before = current_rss_bytes()
    explorer = Explorer(index_dir, device=device)
    queries = (explorer.collection.example_queries(repeats) * repeats)[:repeats]
    latency = {}
    for method in explorer.queries.methods:
        explorer.queries.text_to_video("a person rides a bicycle", method, top_k=5)
        seconds, stages = [], []
        for query in queries:
            began = time.perf_counter()
            result = explorer.queries.text_to_video(query, method, top_k=10)
            seconds.append(time.perf_counter() - began)
            stages.append(result.timings)
        latency[method] = {**percentiles(seconds),
                           **{f"{stage}_p50_ms": round(float(np.median([getattr(t, stage) for t in stages])), 3)
                              for stage in ("encode_ms", "search_ms", "rerank_ms")}}
    return {"rss_bytes_before": before, "rss_bytes_at_rest": current_rss_bytes(), "methods": explorer.queries.methods,
            "query_latency": latency, "queries": len(queries)}
