"""Per-head stores: a head's states are computed once per segment, read back exactly, kept beside
the index (or in the cache for a bundled one), swept with their segment, and safe to race."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import write_video
from vtr_core.index import VideoIndex
from vtr_core.index.head_store import HEADS_DIR, STORE_VERSION, HeadStore, stores_root, sweep_head_stores
from vtr_core.indexing import index_folder, remove_videos
from vtr_core.methods import METHODS, create_head, head_fingerprint
from vtr_core.retrieval.search import Searcher

FRAMES = 3


@pytest.fixture(scope="module")
def two_segment_index(tmp_path_factory, lite_backbone) -> Path:
    """Six clips committed in two runs: two segments."""
    root = tmp_path_factory.mktemp("stores")
    for batch, seeds in (("a", (1, 2, 3)), ("b", (4, 5, 6))):
        (root / "videos" / batch).mkdir(parents=True)
        for seed in seeds:
            write_video(root / "videos" / batch / f"clip{seed}.mp4", num_frames=12, seed=seed)
        index_folder(root / "videos" / batch, root / "idx", lite_backbone, num_frames=FRAMES)
    return root / "idx"


def heads_by_method(backbone) -> dict:
    torch.manual_seed(3)
    heads = {name: create_head(name, backbone, num_frames=FRAMES, temporal_layers=1, corpus=["a red car", "a dog"])
             for name in METHODS}
    with torch.no_grad():  # trained-looking weights: the adapters are not the identity
        for head in heads.values():
            for parameter in head.parameters():
                parameter.add_(0.02 * torch.randn_like(parameter))
    return heads


def counting(head):
    calls = []
    original = head.video_state

    def video_state(*args, **kwargs):
        calls.append(len(args[0]))
        return original(*args, **kwargs)

    head.video_state = video_state
    return calls


def test_stored_states_equal_fresh_ones_and_are_computed_once(two_segment_index, lite_backbone):
    index = VideoIndex.open(two_segment_index)
    assert len(index.segment_names) == 2 and len(index) == 6
    rows = [5, 0, 3]  # across both segments, out of order
    frames = torch.from_numpy(index.frame_features(rows))
    patches = torch.from_numpy(index.patch_tokens(rows))
    raw = torch.from_numpy(index.raw_features(rows))
    for name, head in heads_by_method(lite_backbone).items():
        calls = counting(head)
        searcher = Searcher(index, lite_backbone, head)
        assert sum(calls) == 6, name  # every row once, segment by segment
        with torch.no_grad():
            fresh = head.video_state(frames, patches, raw)
        stored = searcher.candidate_states([index.moments[row].moment_id for row in rows])
        assert stored.keys() == fresh.keys(), name
        for key in fresh:
            np.testing.assert_array_equal(stored[key].numpy(), fresh[key].float().numpy(), err_msg=f"{name}.{key}")
        calls.clear()
        again = Searcher(VideoIndex.open(two_segment_index), lite_backbone, head)
        assert calls == [], f"{name}: states recomputed on the second open"
        query = ["a red screen"]
        first, second = searcher.search(query, top_k=6)[0], again.search(query, top_k=6)[0]
        assert [(h.video_id, h.score) for h in second] == [(h.video_id, h.score) for h in first]
        folder = two_segment_index / HEADS_DIR / f"v{STORE_VERSION}-{head_fingerprint(head)}"
        assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(index.segment_names)


def test_other_weights_get_their_own_store(two_segment_index, lite_backbone):
    head = create_head("meanp", lite_backbone, num_frames=FRAMES)
    before = head_fingerprint(head)
    assert head_fingerprint(create_head("meanp", lite_backbone, num_frames=FRAMES)) == before  # same head, same key
    with torch.no_grad():
        head.adapter.visual.linear.weight.add_(0.01)
    assert head_fingerprint(head) != before
    index = VideoIndex.open(two_segment_index)
    calls = counting(head)
    Searcher(index, lite_backbone, head)
    assert sum(calls) == 6


def test_a_removed_segments_stores_are_swept(tmp_path, lite_backbone):
    (tmp_path / "videos").mkdir()
    for seed in (1, 2, 3):
        write_video(tmp_path / "videos" / f"clip{seed}.mp4", num_frames=12, seed=seed)
    index_folder(tmp_path / "videos", tmp_path / "idx", lite_backbone, num_frames=FRAMES, store_patches=False)
    head = create_head("eercf", lite_backbone, num_frames=FRAMES, temporal_layers=1)
    Searcher(VideoIndex.open(tmp_path / "idx"), lite_backbone, head)
    store = tmp_path / "idx" / HEADS_DIR / f"v{STORE_VERSION}-{head_fingerprint(head)}"
    (old_segment,) = [p.name for p in store.iterdir() if p.is_dir()]
    remove_videos(tmp_path / "idx", ["clip1", "clip3"])  # the segment is mostly dead: compacted
    index = VideoIndex.open(tmp_path / "idx")
    assert old_segment not in index.segment_names and (store / old_segment).exists()  # for the last readers
    remove_videos(tmp_path / "idx", [])  # the next writer: nobody reads the previous generation any more
    assert not (store / old_segment).exists()
    hits = Searcher(index, lite_backbone, head).search(["a screen"], top_k=5)[0]
    assert [h.video_id for h in hits] == ["clip2"] and sorted(p.name for p in store.iterdir() if p.is_dir()) == index.segment_names


def test_a_bundled_index_keeps_its_stores_in_the_cache(two_segment_index, lite_backbone, tmp_path, monkeypatch):
    bundled = VideoIndex.open(two_segment_index).copy_to(tmp_path / "data" / "precomputed" / "idx").directory
    monkeypatch.setenv("VTR_DATA_DIR", str(tmp_path / "data"))  # resources: this copy is now a shipped index
    monkeypatch.setenv("VTR_CACHE_DIR", str(tmp_path / "cache"))
    assert stores_root(bundled).is_relative_to(tmp_path / "cache")
    head = create_head("camoe", lite_backbone, num_frames=FRAMES, temporal_layers=1)
    Searcher(VideoIndex.open(bundled), lite_backbone, head)
    assert not (bundled / HEADS_DIR).exists()  # nothing written into the shipped index
    key = f"v{STORE_VERSION}-{head_fingerprint(head)}"
    assert len(list((tmp_path / "cache" / "head-stores").glob(f"*/{key}/seg-*"))) == 2


def batches_of(values: np.ndarray, before_last=None):
    def batches():
        for start in range(0, len(values), 2):
            if before_last and start + 2 >= len(values):
                before_last()
            yield start, {"coarse": values[start : start + 2], "frames": values[start : start + 2, None].repeat(3, 1)}
    return batches


def test_racing_writers_and_killed_ones(tmp_path):
    values = np.arange(20, dtype=np.float32).reshape(5, 4)
    (tmp_path / "idx").mkdir()
    store = HeadStore(tmp_path / "idx", "k")

    def another_process_publishes_first():
        HeadStore(tmp_path / "idx", "k").states("seg-1", 5, batches_of(values + 100))

    states = store.states("seg-1", 5, batches_of(values, before_last=another_process_publishes_first))
    np.testing.assert_array_equal(states["coarse"], values + 100)  # the first published copy is what everyone reads
    assert states["frames"].shape == (5, 3, 4) and states["coarse"].dtype == np.float32
    assert [p.name for p in store.root.iterdir()] == ["seg-1"]  # the loser's temporary folder is gone

    dead = multiprocessing.get_context("fork").Process(target=lambda: None)
    dead.start()
    dead.join()
    (store.root / f".tmp-seg-2-{dead.pid}-abcdef").mkdir()  # a writer killed mid-write
    (store.root / f".tmp-seg-3-{multiprocessing.current_process().pid}-abcdef").mkdir()  # one still at work
    (store.root / "seg-old").mkdir()
    assert sweep_head_stores(tmp_path / "idx", {"seg-1"}) == 2
    alive = f".tmp-seg-3-{multiprocessing.current_process().pid}-abcdef"
    assert sorted(p.name for p in store.root.iterdir()) == sorted(["seg-1", alive])
