"""A head's stage-1 structure over one generation: kept in the head's store, extended as segments land.

Built once from the head's stored coarse states (faiss ids = moment ids, so merges and compactions,
which move rows but keep ids, never invalidate it), saved as `stage1-<generation>.faiss` in the
store, and read back by every later open of that generation: opening a large index for search
reads this file and the catalogue, nothing else. A newer generation starts from the newest saved
structure of an older one: moments added since are added to it (faiss `add_with_ids`); moments
removed since become tombstones, filtered out of results, until MAX_TOMBSTONES of them, or a
collection grown past its structure's size class (vtr_core.index.structures), call for a rebuild.
On a GPU the structure is an exact float16 scan (TorchFlatIndex), rebuilt at each open: at 1M
moments it is faster than any CPU structure and takes a second to fill.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from vtr_core.index.head_store import HeadStore
from vtr_core.index.reader import VideoIndex
from vtr_core.index.structures import AUTO, choose_structure, set_search_params, trained_empty
from vtr_core.retrieval.exact_search import TorchFlatIndex

MAX_TOMBSTONES = 1000

# coarse states [n, D] of (segment, rows): the store's mapped arrays, gathered
CoarseOf = Callable[[Sequence[str], np.ndarray], np.ndarray]


def _faiss():
    import faiss

    return faiss


@dataclass
class StageOne:
    """Top-k moment ids by inner product with a head's coarse states, removed moments left out."""

    structure: object  # a faiss index with ids, or a TorchFlatIndex over `ids`
    ids: np.ndarray | None = None  # moment id of each TorchFlatIndex row (faiss maps ids itself)
    dead: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    factory: str = ""
    generation: int = 0
    path: Path | None = None  # the saved file a mapped structure reads, when there is one

    @property
    def ntotal(self) -> int:
        return int(self.structure.ntotal) - len(self.dead)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores [Q, k'], moment ids [Q, k']), k' = min(k, live moments); an approximate structure
        may find fewer: those slots hold id -1."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, self.ntotal)
        if k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        fetch = min(int(self.structure.ntotal), k + len(self.dead))
        scores, found = self.structure.search(queries, fetch)
        if self.ids is not None:
            found = np.where(found >= 0, self.ids[np.maximum(found, 0)], -1)
        if len(self.dead):
            keep = ~np.isin(found, self.dead)
            order = np.argsort(~keep, axis=1, kind="stable")  # live hits first, in score order
            scores, found = np.take_along_axis(scores, order, 1), np.take_along_axis(found, order, 1)
            found = np.where(np.take_along_axis(keep, order, 1), found, -1)
        return scores[:, :k], found[:, :k]


def _plan(count: int, dim: int, factory: str):
    return choose_structure(count, dim, override=None if factory == AUTO else factory)


def _new(vectors: np.ndarray, ids: np.ndarray, factory: str):
    """A structure of `factory` (or the one `auto` picks) trained on the vectors, holding them with their ids."""
    plan = _plan(len(vectors), vectors.shape[1], factory)
    structure = _faiss().IndexIDMap2(trained_empty(vectors, plan))
    if len(vectors):
        structure.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)
    return structure, plan.factory


def open_stage_one(index: VideoIndex, store: HeadStore, coarse_of: CoarseOf, dim: int,
                   device: torch.device) -> StageOne:
    """The structure for `index`'s generation: read, extended from an older one, or built."""
    generation, factory = index.generation, index.header.faiss_factory
    if device.type == "cuda":
        ids, segments, rows = index.catalogue.live_ids(generation)
        return StageOne(TorchFlatIndex(coarse_of(segments, rows), device), ids, generation=generation)
    for saved in store.structures():
        if saved > generation:
            continue
        try:
            plan = store.structure_plan(saved)
            structure = store.load_structure(saved, mapped=saved == generation)  # extended ones are changed
        except (OSError, ValueError, RuntimeError):  # swept or torn meanwhile: try an older one
            continue
        wanted = _plan(len(index), dim, factory)
        if wanted.factory == plan["factory"]:
            set_search_params(structure, wanted)
        if saved == generation:
            return StageOne(structure, dead=np.asarray(plan["dead"], np.int64), factory=plan["factory"],
                            generation=generation, path=store.structure_path(saved))
        dead = np.union1d(plan["dead"], index.catalogue.removed_between(saved, generation)).astype(np.int64)
        ids, segments, rows = index.catalogue.live_ids(generation, added_after=saved)
        # removals the catalogue has purged since cannot be tombstoned: the count tells
        complete = structure.ntotal - len(dead) + len(ids) == len(index)
        if not complete or len(dead) > MAX_TOMBSTONES or wanted.factory != plan["factory"]:
            break  # rebuild below
        if len(ids):
            structure.add_with_ids(coarse_of(segments, rows), ids)
        return _saved(store, StageOne(structure, dead=dead, factory=plan["factory"], generation=generation))
    ids, segments, rows = index.catalogue.live_ids(generation)
    vectors = coarse_of(segments, rows) if len(ids) else np.zeros((0, dim), np.float32)
    structure, built = _new(vectors, ids, factory)
    return _saved(store, StageOne(structure, factory=built, generation=generation))


def _saved(store: HeadStore, stage: StageOne) -> StageOne:
    try:
        store.save_structure(stage.generation, stage.structure,
                             {"factory": stage.factory, "dead": stage.dead.tolist(),
                              "ntotal": int(stage.structure.ntotal)})
    except OSError:  # a full or read-only disk costs the next open a rebuild, not this search
        pass
    return stage
