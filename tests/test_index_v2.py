"""Format 2 of the index: stage-1 structures kept per head and generation and extended as segments
land, segments merged in the background, format-1 indexes refused with advice or converted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from vtr_core.errors import IndexMismatchError
from vtr_core.index import CATALOGUE, IndexHeader, VideoFeatures, VideoIndex, VideoRecord, merging, upgrade_index
from vtr_core.index.head_store import HeadStore
from vtr_core.index.writer import open_writer
from vtr_core.methods import create_head, head_fingerprint
from vtr_core.retrieval import stage_one
from vtr_core.retrieval.search import Searcher
from vtr_core.studies.bench.scale import SyntheticBackbone

T, D = 3, 16


def header() -> IndexHeader:
    return IndexHeader("synthetic-16", "synthetic-16", D, T, None, False)


def video(n: int, start_s: float = 0.0) -> VideoFeatures:
    rng = np.random.default_rng(n)
    frames = rng.standard_normal((T, D)).astype(np.float32)
    coarse = frames.mean(0) / np.linalg.norm(frames.mean(0))
    record = VideoRecord(f"v{n:04d}", f"v{n:04d}.mp4", n, n, f"{n:064x}", 4.0, 25.0, 100, 32, 24)
    return VideoFeatures.whole(record, [0.5, 1.5, 2.5], coarse, frames, strip_jpeg=b"strip%d" % n)


def commit_batches(directory: Path, batches: list[range], merge: bool = True) -> VideoIndex:
    with open_writer(directory, header(), merge=merge) as writer:
        for batch in batches:
            for n in batch:
                writer.add(video(n))
            writer.commit()
    return VideoIndex.open(directory)


def searcher(directory: Path, method: str = "meanp") -> Searcher:
    backbone = SyntheticBackbone(D)
    torch.manual_seed(0)
    return Searcher(VideoIndex.open(directory), backbone, create_head(method, backbone, num_frames=T, temporal_layers=1))


def exact_ids(s: Searcher, queries: np.ndarray, k: int) -> np.ndarray:
    ids, segments, rows = s.index.catalogue.live_ids(s.index.generation)
    coarse = np.stack([s.segment_states(seg)["coarse"][row] for seg, row in zip(segments, rows)])
    return ids[np.argsort(-(queries @ coarse.T), axis=1, kind="stable")[:, :k]]


# ------------------------------------------------------------------ stage-1 structures
def test_a_structure_is_stored_per_generation_and_extended_not_rebuilt(tmp_path, monkeypatch):
    directory = tmp_path / "idx"
    commit_batches(directory, [range(0, 40)])
    first = searcher(directory)
    store = HeadStore(directory, head_fingerprint(first.head))
    assert store.structures() == [first.index.generation]
    commit_batches(directory, [range(40, 70)])

    built = []
    real_new = stage_one._new
    monkeypatch.setattr(stage_one, "_new", lambda *a: built.append(1) or real_new(*a))
    second = searcher(directory)
    assert built == [] and second.stage_one.structure.ntotal == 70  # 40 kept + 30 added, no rebuild
    assert store.structures()[0] == second.index.generation
    queries = np.random.default_rng(1).standard_normal((5, D)).astype(np.float32)
    _, found = second.stage_one.search(queries, 10)
    np.testing.assert_array_equal(found, exact_ids(second, queries, 10))  # Flat: exact, ids are moment ids
    again = searcher(directory)  # the same generation: read back as stored
    assert built == [] and again.stage_one.structure.ntotal == 70


def test_removed_moments_are_tombstones_until_a_purge_forces_a_rebuild(tmp_path, monkeypatch):
    directory = tmp_path / "idx"
    commit_batches(directory, [range(0, 30)])
    searcher(directory)
    target = VideoIndex.open(directory)
    gone_row = target.row_of("v0007")
    gone_id = target.moments[gone_row].moment_id
    query = target.coarse_vectors([gone_row])  # the removed video would be its own best match
    with open_writer(directory, header()) as writer:
        writer.remove("v0007")
        writer.commit()
    built = []
    real_new = stage_one._new
    monkeypatch.setattr(stage_one, "_new", lambda *a: built.append(1) or real_new(*a))
    s = searcher(directory)
    assert built == [] and s.stage_one.dead.tolist() == [gone_id]
    hits = s.search_states({"coarse": torch.from_numpy(query)}, top_k=5)[0]
    assert len(hits) == 5 and "v0007" not in [h.video_id for h in hits]
    # a removal no searcher saw before the next writer purged its row cannot be tombstoned: rebuilt
    with open_writer(directory, header()) as writer:
        writer.remove("v0008")
        writer.commit()
    with open_writer(directory, header()) as writer:
        writer.add(video(99))
        writer.commit()
    s = searcher(directory)
    assert built == [1] and len(s.stage_one.dead) == 0 and s.stage_one.structure.ntotal == 29


def test_a_collection_that_outgrows_its_structure_gets_the_next_one(tmp_path, monkeypatch):
    monkeypatch.setattr("vtr_core.index.structures.FLAT_MAX_COUNT", 50)
    directory = tmp_path / "idx"
    commit_batches(directory, [range(0, 40)])
    assert searcher(directory).stage_one.factory == "Flat"
    commit_batches(directory, [range(40, 80)])
    s = searcher(directory)
    assert s.stage_one.factory.startswith("HNSW") and s.stage_one.structure.ntotal == 80


# ------------------------------------------------------------------ merging
def test_tiers_merge_ten_segments_into_the_next_tier():
    assert [merging.tier(r) for r in (1, 64, 65, 639, 640, 6399, 6400)] == [0, 0, 0, 0, 1, 1, 2]
    small = [(f"s{i}", 64) for i in range(10)]
    assert merging.plan_merge(small[:9]) == []
    assert merging.plan_merge(small) == small
    assert merging.plan_merge(small, busy={"s0"}) == []  # a segment being merged is not planned again
    assert merging.plan_merge([("big", 700)] + small) == small


def test_merges_keep_every_moment_and_bound_the_segment_count(tmp_path):
    directory = tmp_path / "idx"
    plain = commit_batches(tmp_path / "plain", [range(i * 4, i * 4 + 4) for i in range(25)], merge=False)
    merged = commit_batches(directory, [range(i * 4, i * 4 + 4) for i in range(25)])
    assert len(plain.segment_names) == 25 and len(merged.segment_names) < 10
    assert [m.video_id for m in merged.moments] == [m.video_id for m in plain.moments]
    np.testing.assert_array_equal(merged.frame_features(), plain.frame_features())
    assert [merged.frame_strip_jpeg(r) for r in range(len(merged))] == [b"strip%d" % n for n in range(100)]
    on_disk = {p.name for p in (directory / "segments").iterdir()}
    assert set(merged.segment_names) <= on_disk


def test_a_merged_segment_reuses_the_states_its_sources_had(tmp_path, monkeypatch):
    directory = tmp_path / "idx"
    commit_batches(directory, [range(i * 3, i * 3 + 3) for i in range(9)], merge=False)
    before = searcher(directory, "camoe")  # states stored for the 9 segments
    rows = list(range(27))
    states = {k: v.numpy() for k, v in before.candidate_states([before.index.moments[r].moment_id for r in rows]).items()}
    commit_batches(directory, [range(27, 30)])  # the tenth segment: ten of tier 0, merged
    after = VideoIndex.open(directory)
    assert len(after.segment_names) == 1 and len(after) == 30
    store = HeadStore(directory, head_fingerprint(before.head))
    assert not store.has(after.segment_names[0])  # the tenth source had no states: none concatenated
    with open_writer(directory, header()):  # the sources are dropped; their states wait for the merged one
        pass
    calls = []
    real = type(before.head).video_state
    monkeypatch.setattr(type(before.head), "video_state", lambda self, *a: calls.append(len(a[0])) or real(self, *a))
    again = searcher(directory, "camoe")
    assert calls == [3]  # only the tenth source's rows were computed
    stored = again.candidate_states([after.moments[r].moment_id for r in rows])
    for key, value in states.items():
        np.testing.assert_array_equal(stored[key].numpy(), value)
    with open_writer(directory, header()):  # the merged segment has its states now: the sources' go
        pass
    assert {p.name for p in store.root.iterdir() if p.is_dir()} == set(after.segment_names)


def test_a_merge_concatenates_stores_its_sources_all_have(tmp_path):
    directory = tmp_path / "idx"
    commit_batches(directory, [range(i * 3, i * 3 + 3) for i in range(10)], merge=False)
    s = searcher(directory, "camoe")
    store = HeadStore(directory, head_fingerprint(s.head))
    with open_writer(directory, header()):  # ten of tier 0: merged at open, published at close
        pass
    after = VideoIndex.open(directory)
    assert len(after.segment_names) == 1 and store.has(after.segment_names[0])


KILLED_MERGE = r"""
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_index_v2 import commit_batches, header, video
from vtr_core.index import merging, segments
from vtr_core.index.writer import open_writer

real = segments.merge_segments
def slow_merge(root, name, sources):
    out = real(root, name, sources)
    print("merged", flush=True)  # written, not published: the parent kills us here
    time.sleep(600)
merging.merge_segments = slow_merge
directory = Path({directory!r})
with open_writer(directory, header()) as writer:
    for i in range(12):
        writer.add(video(i))
        writer.commit()
    print("committed", flush=True)
    time.sleep(600)
"""


def test_kill_9_during_a_merge_loses_nothing_committed(tmp_path):
    directory = tmp_path / "idx"
    code = KILLED_MERGE.format(tests=str(REPO / "tests"), directory=str(directory))
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    seen = set()
    while seen != {"merged", "committed"}:
        line = child.stdout.readline()
        assert line, "the child ended before the merge"
        seen.add(line.strip())
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    index = VideoIndex.open(directory)
    assert [m.video_id for m in index.moments] == [f"v{i:04d}" for i in range(12)]
    assert len(index.segment_names) == 12  # the merge was never published
    orphans = {p.name for p in (directory / "segments").iterdir()} - set(index.segment_names)
    assert len(orphans) == 1  # the merged folder, which no catalogue row names
    with open_writer(directory, header()):  # the next writer sweeps it and merges again
        pass
    index = VideoIndex.open(directory)
    assert len(index.segment_names) < 12 and len(index) == 12
    with open_writer(directory, header()):  # and the one after deletes the merged sources
        pass
    assert {p.name for p in (directory / "segments").iterdir()} == set(index.segment_names)
    np.testing.assert_array_equal(index.frame_features([11])[0], video(11).moments[0].frames.astype(np.float16))


# ------------------------------------------------------------------ format 1
def write_v1_index(directory: Path, items: list[VideoFeatures]) -> None:
    """An index as format 1 wrote it (manifest.json, a strips/ folder of JPEG files, a faiss file)."""
    segment = directory / "segments" / "seg-000001-abcdef"
    (segment / "strips").mkdir(parents=True)
    moments = [item.moments[0] for item in items]
    np.save(segment / "coarse.npy", np.stack([m.coarse for m in moments]).astype(np.float32))
    np.save(segment / "frames.npy", np.stack([m.frames for m in moments]).astype(np.float16))
    for row, m in enumerate(moments):
        (segment / "strips" / f"{row}.jpg").write_bytes(m.strip_jpeg)
    (directory / "faiss").mkdir()
    (directory / "faiss" / "coarse-000001.faiss").write_bytes(b"format-1 faiss")
    videos = [{**item.record.__dict__, "frame_times_s": m.frame_times_s, "segment": segment.name, "row": row}
              for row, (item, m) in enumerate(zip(items, moments))]
    (directory / "manifest.json").write_text(json.dumps({
        "format": "vtr-index", "version": 1, "generation": 1, "header": header().__dict__,
        "faiss": "coarse-000001.faiss", "videos": videos}))


def test_a_format_1_index_is_refused_with_advice_then_converted_by_upgrade(tmp_path):
    directory = tmp_path / "old"
    items = [video(n) for n in range(5)]
    write_v1_index(directory, items)
    with pytest.raises(IndexMismatchError, match=r"format 1 \(manifest.json\).*python -m vtr_core upgrade"):
        VideoIndex.open(directory)
    done = subprocess.run([sys.executable, "-m", "vtr_core", "upgrade", str(directory)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "converted to index format 2" in done.stdout, done.stderr
    index = VideoIndex.open(directory)
    assert [m.video_id for m in index.moments] == [i.record.video_id for i in items]
    assert index.moments[2].frame_times_s == [0.5, 1.5, 2.5] and index.moments[2].end_s == 4.0
    assert index.frame_strip_jpeg(3) == b"strip3"  # read from the format-1 strips/ folder
    np.testing.assert_array_equal(index.coarse_vectors(), np.stack([i.moments[0].coarse for i in items]))
    assert not (directory / "manifest.json").exists() and not (directory / "faiss").exists()
    assert upgrade_index(directory) is False  # already format 2


def test_the_first_write_converts_a_format_1_index_and_keeps_its_videos(tmp_path):
    directory = tmp_path / "old"
    write_v1_index(directory, [video(n) for n in range(3)])
    with open_writer(directory, header()) as writer:
        writer.add(video(3))
        writer.remove("v0001")
        index = writer.commit()
    assert sorted(m.video_id for m in index.moments) == ["v0000", "v0002", "v0003"]
    assert index.frame_strip_jpeg(index.row_of("v0002")) == b"strip2"


def test_a_conversion_that_fails_midway_leaves_format_1_intact(tmp_path, monkeypatch):
    directory = tmp_path / "old"
    write_v1_index(directory, [video(n) for n in range(3)])
    manifest = (directory / "manifest.json").read_bytes()
    from vtr_core.index import legacy

    def failing_rename(source, target):
        raise OSError("simulated crash before the catalogue is renamed into place")

    monkeypatch.setattr(legacy.os, "rename", failing_rename)
    with pytest.raises(OSError, match="simulated crash"):
        upgrade_index(directory)
    monkeypatch.undo()
    assert (directory / "manifest.json").read_bytes() == manifest and not (directory / CATALOGUE).exists()
    assert upgrade_index(directory) is True and len(VideoIndex.open(directory)) == 3
    assert not list(directory.glob(f".{CATALOGUE}*"))  # the staging folder of the failed try is swept
