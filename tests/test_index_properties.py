"""Property tests of the on-disk index: any sequence of adds, removes and commits round-trips.

A plain dict is the model: after every commit the reopened index must hold exactly the model's
videos, each row returning the features written for its id (float16-rounded where stored as
float16), coarse search must return the true top-k of the stored vectors, and removed rows must
be freed (no segment left mostly dead, no file the manifest does not name).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from vtr_core.index import (
    COMPACT_BELOW,
    IndexHeader,
    VideoFeatures,
    VideoIndex,
    VideoRecord,
)

IDS = [f"v{i}" for i in range(5)]


@st.composite
def headers(draw) -> IndexHeader:
    store_patches = draw(st.booleans())
    return IndexHeader(
        backbone_spec="prop", backbone_id="prop-v1",
        embed_dim=draw(st.integers(1, 6)), num_frames=draw(st.integers(1, 4)),
        patch_grid=[draw(st.integers(1, 2)), draw(st.integers(1, 3))] if store_patches or draw(st.booleans()) else None,
        store_patches=store_patches, raw_dim=draw(st.sampled_from([0, 3])),
    )


KINDS = ["add"] * 4 + ["remove"] * 3 + ["commit"] * 2 + ["reopen"]  # reopen: close the writer, no commit


@st.composite
def operation(draw) -> tuple:
    kind = draw(st.sampled_from(KINDS))
    if kind == "add":
        return (kind, draw(st.sampled_from(IDS)), draw(st.integers(0, 2**16)))
    return (kind, draw(st.sampled_from(IDS))) if kind == "remove" else (kind,)


OPS = st.lists(operation(), max_size=20)
# a commit that removes most of a segment: its survivors must move and the old rows be freed
COMPACTION = [("add", "v0", 1), ("add", "v1", 2), ("add", "v2", 3), ("add", "v3", 4), ("commit",),
              ("remove", "v0"), ("remove", "v1"), ("add", "v2", 5), ("commit",)]


def make_video(header: IndexHeader, video_id: str, seed: int) -> VideoFeatures:
    rng = np.random.default_rng(seed)
    T, D, P, R = header.num_frames, header.embed_dim, header.num_patches, header.raw_dim
    record = VideoRecord(video_id=video_id, path=f"{video_id}.mp4", size=seed, mtime_ns=seed, sha256=f"{seed:064x}",
                         duration_s=1.0, fps=10.0, num_source_frames=10, width=8, height=6)
    return VideoFeatures.whole(
        record=record,
        frame_times_s=[0.1 * t for t in range(T)],
        coarse=rng.standard_normal(D).astype(np.float32),
        frames=(4 * rng.standard_normal((T, D))).astype(np.float32),
        patches=rng.standard_normal((T, P, D)).astype(np.float32) if header.store_patches else None,
        strip_jpeg=seed.to_bytes(3, "big"),
        raw=rng.standard_normal((T, R)).astype(np.float32) if R else None,
    )


def half(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float32)


def check(directory: Path, header: IndexHeader, model: dict[str, VideoFeatures], queries: np.ndarray) -> None:
    index = VideoIndex.open(directory, backbone_id=header.backbone_id)
    ids = [v.video_id for v in index.videos]
    assert sorted(ids) == sorted(model) and len(set(ids)) == len(ids)
    expected = [model[i] for i in ids]  # manifest order
    D, T = header.embed_dim, header.num_frames
    coarse = np.stack([e.moments[0].coarse for e in expected]) if expected else np.zeros((0, D), np.float32)
    np.testing.assert_array_equal(index.coarse_vectors(), coarse)
    np.testing.assert_array_equal(index.frame_features(),
                                  np.stack([half(e.moments[0].frames) for e in expected]) if expected else np.zeros((0, T, D)))
    if header.raw_dim:
        np.testing.assert_array_equal(index.raw_features(),
                                      np.stack([half(e.moments[0].raw) for e in expected]) if expected else np.zeros((0, T, 3)))
    else:
        assert index.raw_features() is None
    for row, e in enumerate(expected):
        if header.store_patches:
            np.testing.assert_array_equal(index.patch_tokens([row])[0], half(e.moments[0].patches))
        assert index.frame_strip_jpeg(row) == e.moments[0].strip_jpeg
        assert index.video(index.moments[row].video_id).sha256 == e.record.sha256

    # coarse search: the true top-k of the stored vectors, by inner product
    k = min(3, len(ids))
    scores, rows = index.search_coarse(queries, 3)
    assert scores.shape == rows.shape == (len(queries), k)
    exact = queries @ coarse.T
    for q in range(len(queries)):
        np.testing.assert_allclose(scores[q], exact[q, rows[q]], rtol=1e-5, atol=1e-5)  # each score is its row's
        np.testing.assert_allclose(scores[q], np.sort(exact[q])[::-1][:k], rtol=1e-5, atol=1e-5)  # and the best k
        assert len(set(rows[q].tolist())) == k

    # removed rows are freed: every segment on disk is live and at least half full, or was live in
    # the previous generation (kept for its readers until the next commit or writer)
    live: dict[str, int] = {}
    for moment in index.moments:
        live[moment.segment] = live.get(moment.segment, 0) + 1
    on_disk = {p.name for p in (directory / "segments").iterdir()} if (directory / "segments").is_dir() else set()
    previous = {name for name, _, _ in index.catalogue.segments(index.generation - 1)} if index.generation else set()
    assert set(live) <= on_disk <= set(live) | previous
    for name, count in live.items():
        stored = len(np.load(directory / "segments" / name / "coarse.npy", mmap_mode="r"))
        assert count >= COMPACT_BELOW * stored, (name, count, stored)
    assert set(index.segment_names) == set(live)


@settings(max_examples=25, deadline=None)
@given(headers(), OPS, st.integers(0, 2**16))
@example(IndexHeader("prop", "prop-v1", embed_dim=3, num_frames=2, patch_grid=[1, 2], store_patches=True, raw_dim=3),
         COMPACTION, 0)
def test_any_sequence_of_adds_removes_and_commits_round_trips(header, ops, seed):
    queries = np.random.default_rng(seed).standard_normal((2, header.embed_dim)).astype(np.float32)
    sessions: list[list[tuple]] = [[]]  # one writer each; "reopen" closes one without committing
    for op in ops:
        sessions.append([]) if op[0] == "reopen" else sessions[-1].append(op)
    sessions[-1].append(("commit",))
    committed: dict[str, VideoFeatures] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "idx"
        for session in sessions:
            pending: dict[str, VideoFeatures | None] = {}  # None: a removal
            with VideoIndex.writer(directory, header) as writer:
                for op in session:
                    if op[0] == "add":
                        pending[op[1]] = make_video(header, op[1], op[2])
                        writer.add(pending[op[1]])
                    elif op[0] == "remove" and op[1] in committed:
                        writer.remove(op[1])
                        pending[op[1]] = None
                    elif op[0] == "remove":  # only committed videos can be removed; the error names it
                        with pytest.raises(KeyError, match=op[1]):
                            writer.remove(op[1])
                    else:
                        writer.commit()
                        for video_id, item in pending.items():
                            if item is None:
                                committed.pop(video_id, None)
                            else:
                                committed[video_id] = item
                        pending.clear()
                        check(directory, header, committed, queries)
            check(directory, header, committed, queries)  # what was not committed is not there
