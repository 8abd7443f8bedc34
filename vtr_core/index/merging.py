"""Merging small segments in the background of commits, so the count of segments (and of open
memory maps) stays bounded however many commits built the index.

Tiered policy, as in log-structured stores: a segment's tier is how many times MERGE_FACTOR its
rows exceed BASE_ROWS; when MERGE_FACTOR live segments share a tier, the oldest of them are
concatenated into one segment of the next tier. Every row is rewritten once per tier, about
log10(N / 64) times in all (4 at 1M moments), and at most MERGE_FACTOR - 1 segments sit in each
tier: ~45 segments at 1M moments built 64 at a time.

The merge runs in a thread while commits go on: it only reads immutable segments and writes a new
folder (and the concatenated head stores of its sources, so no head recomputes states for it). The
writer publishes it in its next commit (moments relocated in the catalogue, sources dropped), or at
close. A crash loses the unpublished merge only; its folder is swept as unreferenced.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from vtr_core.index.head_store import merge_head_stores
from vtr_core.index.segments import SEGMENTS_DIR, merge_segments, new_name

MERGE_FACTOR = 10
BASE_ROWS = 64


def tier(rows: int) -> int:
    return int(math.log(max(rows, 1) / BASE_ROWS, MERGE_FACTOR)) if rows > BASE_ROWS else 0


def plan_merge(segments: Sequence[tuple[str, int]], busy: set[str] = frozenset()) -> list[tuple[str, int]]:
    """The oldest MERGE_FACTOR (name, rows) of the lowest tier holding that many, or [] (oldest first in)."""
    by_tier: dict[int, list[tuple[str, int]]] = {}
    for name, rows in segments:
        if name not in busy:
            by_tier.setdefault(tier(rows), []).append((name, rows))
    for level in sorted(by_tier):
        if len(by_tier[level]) >= MERGE_FACTOR:
            return by_tier[level][:MERGE_FACTOR]
    return []


@dataclass
class MergeResult:
    name: str
    sources: list[str]
    offsets: list[int]  # the row of the merged segment where each source's rows begin
    rows: int
    source_rows: list[int]  # rows of each source, in order

    @property
    def merged_from(self) -> list[list]:
        """[[source, rows], ...]: what the catalogue records, so a head can reuse its sources' states."""
        return [[name, rows] for name, rows in zip(self.sources, self.source_rows)]


class BackgroundMerge:
    """One merge running in a thread; `result()` waits for it and re-raises its failure."""

    def __init__(self, index_dir: Path, sources: Sequence[tuple[str, int]], generation: int):
        self.index_dir = index_dir
        self.sources = [name for name, _ in sources]
        offsets, start = [], 0
        for _, rows in sources:
            offsets.append(start)
            start += rows
        self.planned = MergeResult(new_name(generation), self.sources, offsets, start, [r for _, r in sources])
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"merge {self.planned.name}", daemon=True)
        self._thread.start()

    @property
    def names(self) -> set[str]:
        """Segments this merge reads or writes: the writer must neither drop nor sweep them."""
        return {*self.sources, self.planned.name}

    def _run(self) -> None:
        try:
            root = self.index_dir / SEGMENTS_DIR
            merge_segments(root, self.planned.name, [root / name for name in self.sources])
            merge_head_stores(self.index_dir, self.sources, self.planned.name)
        except BaseException as exc:  # reported to the writer's thread by result()
            self._error = exc

    def wait(self) -> None:
        """Wait for the thread, whatever its outcome (an abandoned merge is swept later)."""
        self._thread.join()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> MergeResult:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.planned
