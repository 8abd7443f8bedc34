"""Stage 1 in torch, batched GPU-style re-ranking and the decode workers, checked on the CPU.

The same code runs on a GPU (tests/test_gpu.py compares the two devices there); here it must give
faiss's and the per-video path's answers exactly.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import write_video
from vtr_core.backbones.base import TextFeatures
from vtr_core.index import VideoIndex, build_faiss
from vtr_core.indexing import decode_ahead, index_folder
from vtr_core.methods.camoe import CAMoE, CAMoEConfig
from vtr_core.methods.eercf import EERCF, EERCFConfig
from vtr_core.retrieval import exact_search
from vtr_core.retrieval.exact_search import TorchFlatIndex
from vtr_core.retrieval.ranking import _rerank_by_query_blocks, rerank_candidates


def unit(rows: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_torch_flat_equals_faiss_flat_on_the_cpu(monkeypatch):
    videos, queries = unit(3000, 32, 0), unit(40, 32, 1)
    faiss_scores, faiss_rows = build_faiss(videos, "Flat").search(queries, 15)
    index = TorchFlatIndex(videos, "cpu")
    scores, rows = index.search(queries, 15)
    assert index.ntotal == 3000 and index.vectors.dtype == torch.float32
    np.testing.assert_array_equal(rows, faiss_rows)
    np.testing.assert_allclose(scores, faiss_scores, atol=1e-6)
    # a score block of a few queries gives the same answer as one block
    monkeypatch.setattr(exact_search, "SCORE_BLOCK_BYTES", 3 * 3000 * 4)
    np.testing.assert_array_equal(TorchFlatIndex(videos, "cpu").search(queries, 15)[1], faiss_rows)


def test_torch_flat_edges():
    index = TorchFlatIndex(unit(5, 8, 0), "cpu")
    scores, rows = index.search(unit(2, 8, 1), 50)  # k above N: every video, best first
    assert rows.shape == (2, 5) and sorted(rows[0].tolist()) == [0, 1, 2, 3, 4]
    assert (np.diff(scores, axis=1) <= 0).all()
    with pytest.raises(ValueError, match="queries have 4 dimensions, the index 8"):
        index.search(unit(1, 4, 2), 3)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        TorchFlatIndex(np.zeros(8, np.float32), "cpu")


@pytest.mark.parametrize("head", [EERCF(16, EERCFConfig(num_frames=3, temporal_layers=1)),
                                  CAMoE(16, CAMoEConfig(temporal_layers=1))], ids=["eercf", "camoe"])
def test_rerank_in_query_blocks_equals_per_query_scoring(head):
    torch.manual_seed(0)
    head.eval()
    videos = head.video_state(F.normalize(torch.randn(60, 3, 16), dim=-1), torch.randn(60, 3, 4, 16))
    words = torch.randn(9, 5, 16)
    text = TextFeatures(F.normalize(torch.randn(9, 16), dim=-1), words, torch.ones(9, 5, dtype=torch.bool),
                        [["a", "dog", "runs", "on", "grass"]] * 9, ["a dog runs on grass"] * 9)
    queries = head.text_state(text)
    candidates = torch.randint(0, 60, (9, 7))
    expected = torch.stack([rerank_candidates(head, {k: v[q : q + 1] for k, v in queries.items()}, videos,
                                              candidates[q : q + 1])[0] for q in range(9)])
    blocked = _rerank_by_query_blocks(head, queries, videos, candidates, pairs_per_block=20)  # 1-query blocks of 7 and more
    torch.testing.assert_close(blocked, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rerank_candidates(head, queries, videos, candidates), expected, atol=1e-5, rtol=1e-5)


def test_decode_workers_in_processes_match_threads(tmp_path):
    paths = []
    for i in range(3):
        paths.append(write_video(tmp_path / f"v{i}.mp4", num_frames=15, seed=i))
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    jobs = [(p, p.stem, 4, "shots") for p in [paths[0], tmp_path / "bad.mp4", *paths[1:]]]
    threads = list(decode_ahead(jobs, workers=2, processes=False))
    processes = list(decode_ahead(jobs, workers=2, processes=True))
    assert [d.video_id for d in processes] == ["v0", "bad", "v1", "v2"]  # in order, failures included
    assert processes[1].error.startswith(str(tmp_path / "bad.mp4")) and processes[1].moments == []
    for a, b in zip(threads, processes):
        assert (a.sha256, a.strips, a.error, a.streamed) == (b.sha256, b.strips, b.error, b.streamed)
        assert len(a.moments) == len(b.moments) == (0 if a.error else 1)  # short clips: one moment each
        for x, y in zip(a.moments, b.moments):
            np.testing.assert_array_equal(x.frames, y.frames)


def test_index_folder_with_process_workers_and_commit_interval(tmp_path, lite_backbone):
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(4):
        write_video(folder / f"c{i}.mp4", num_frames=10, seed=10 + i)
    # a long commit interval: one commit at the end, however small commit_every is
    report = index_folder(folder, tmp_path / "once", lite_backbone, num_frames=2, commit_every=1, batch_frames=2,
                          decode_workers=2, decode_processes=True, commit_interval_s=1e6)
    assert report.decode_processes and sorted(report.added) == ["c0", "c1", "c2", "c3"]
    assert VideoIndex.open(tmp_path / "once").generation == 1
    assert 0 < report.wait_s + report.encode_s + report.store_s <= report.seconds
    every = index_folder(folder, tmp_path / "every", lite_backbone, num_frames=2, commit_every=1, batch_frames=2,
                         decode_workers=2, decode_processes=False, commit_interval_s=0)
    assert VideoIndex.open(tmp_path / "every").generation >= 4  # committed after each video
    np.testing.assert_allclose(VideoIndex.open(tmp_path / "every").frame_features(),
                               VideoIndex.open(tmp_path / "once").frame_features())
    assert not every.decode_processes
