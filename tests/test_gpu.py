"""The CUDA paths give the CPU's answers: exact stage 1, batched re-rank, search, clip encoding.

Skipped without CUDA (CI has none); run on a GPU machine with `pytest tests/test_gpu.py`.
"""


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import save_tiny_clip
from tests.test_exact_search import unit
from vtr_core.backbones import create_backbone
from vtr_core.backbones.base import TextFeatures
from vtr_core.index import (
    IndexHeader,
    VideoFeatures,
    VideoIndex,
    VideoRecord,
    build_faiss,
)
from vtr_core.methods import meanp
from vtr_core.methods.eercf import EERCF, EERCFConfig
from vtr_core.retrieval.exact_search import TorchFlatIndex
from vtr_core.retrieval.ranking import rerank_candidates
from vtr_core.retrieval.search import Searcher

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_exact_gpu_search_matches_faiss_flat():
    videos, queries, k = unit(20_000, 64, 0), unit(300, 64, 1), 20
    faiss_scores, faiss_rows = build_faiss(videos, "Flat").search(queries, k + 1)
    scores, rows = TorchFlatIndex(videos, "cuda").search(queries, k)
    assert scores.dtype == np.float32 and rows.shape == (300, k)
    # float16 storage moves a product by ~1e-3 at most: rows agree wherever the k-th place is not that close
    clear = faiss_scores[:, k - 1] - faiss_scores[:, k] > 2e-3
    assert clear.sum() >= 50  # a third of these random queries
    for q in np.flatnonzero(clear):
        assert set(rows[q]) == set(faiss_rows[q, :k])
    overlap = np.mean([len(set(r) & set(f[:k])) / k for r, f in zip(rows, faiss_rows)])
    assert overlap > 0.98
    np.testing.assert_allclose(scores, (videos[rows] * queries[:, None]).sum(-1), atol=2e-3)
    assert (np.diff(scores, axis=1) <= 0).all()  # best first


def test_batched_rerank_on_gpu_matches_cpu():
    torch.manual_seed(0)
    head = EERCF(32, EERCFConfig(num_frames=4, temporal_layers=1)).eval()
    frames = F.normalize(torch.randn(500, 4, 32), dim=-1)
    patches = torch.randn(500, 4, 9, 32)
    text = TextFeatures(F.normalize(torch.randn(70, 32), dim=-1), torch.zeros(70, 1, 32), torch.zeros(70, 1, dtype=torch.bool))
    candidates = torch.randint(0, 500, (70, 50))
    cpu = rerank_candidates(head, head.text_state(text), head.video_state(frames, patches), candidates)
    gpu_head = head.cuda()
    gpu = rerank_candidates(gpu_head, gpu_head.text_state(text.to(torch.device("cuda"))),
                            gpu_head.video_state(frames.cuda(), patches.cuda()), candidates)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    _, checkpoint = save_tiny_clip(tmp_path_factory.mktemp("tiny-clip-gpu"), "tiny-clip-gpu")
    return f"clip:tiny-clip-gpu/{checkpoint}"


def test_clip_frames_on_gpu_match_cpu(tiny_clip):
    frames = np.random.default_rng(0).integers(0, 256, (6, 48, 64, 3), dtype=np.uint8)
    cpu = create_backbone(tiny_clip, "cpu").encode_frames(frames)
    gpu = create_backbone(tiny_clip, "cuda").encode_frames(frames)  # float16 autocast
    assert F.cosine_similarity(gpu.frame, cpu.frame).min() > 0.995
    assert F.cosine_similarity(gpu.patches.flatten(0, 1), cpu.patches.flatten(0, 1)).min() > 0.99


def test_search_on_gpu_ranks_as_on_cpu(tmp_path, tiny_clip):
    backbone = create_backbone(tiny_clip, "cpu")  # one text encoder: only stage 1 and the head move
    T, P, D = 4, 16, backbone.embed_dim
    header = IndexHeader(backbone_spec=backbone.spec, backbone_id=backbone.id, embed_dim=D, num_frames=T,
                         patch_grid=[4, 4], store_patches=True)
    rng = np.random.default_rng(0)
    with VideoIndex.writer(tmp_path / "idx", header) as writer:
        for i in range(300):
            frames = rng.standard_normal((T, D)).astype(np.float32)
            record = VideoRecord(video_id=f"v{i}", path=f"v{i}.mp4", size=i, mtime_ns=i, sha256=f"{i:064x}",
                                 duration_s=1.0, fps=10.0, num_source_frames=10, width=32, height=24)
            writer.add(VideoFeatures.whole(record=record, frame_times_s=[0.0, 0.25, 0.5, 0.75], coarse=meanp.video_embedding(frames).numpy(), frames=frames,
                                     patches=rng.standard_normal((T, P, D)).astype(np.float32), strip_jpeg=b"x"))
        writer.commit()
    index = VideoIndex.open(tmp_path / "idx")
    torch.manual_seed(0)
    head = EERCF(D, EERCFConfig(num_frames=T, temporal_layers=1, rerank_top_k=30))
    queries = ["a dog runs on the beach", "a man cooks pasta", "two cars race"]
    on_cpu = Searcher(index, backbone, head, "cpu").search(queries, top_k=10)
    on_gpu = Searcher(index, backbone, head, "cuda").search(queries, top_k=10)
    for cpu_hits, gpu_hits in zip(on_cpu, on_gpu):
        assert [h.video_id for h in gpu_hits][:5] == [h.video_id for h in cpu_hits][:5]
        np.testing.assert_allclose([h.score for h in gpu_hits], [h.score for h in cpu_hits], atol=2e-3)



@pytest.mark.parametrize("method", ["eercf", "camoe"])
def test_head_training_and_validation_on_gpu(tmp_path, method):
    from vtr_core.methods import create_head
    from vtr_core.training import (
        TrainConfig,
        TrainData,
        ValidationData,
        train_head,
    )

    torch.manual_seed(0)
    V, T, D = 64, 4, 32
    words = ["dog", "cat", "car", "man", "ball", "runs", "jumps", "red"]
    texts = [f"a {words[i % 8]} {words[(i * 3 + 1) % 8]} near a {words[(i * 5 + 2) % 8]}" for i in range(V)]
    text = TextFeatures(F.normalize(torch.randn(V, D), dim=-1), torch.randn(V, 3, D), torch.ones(V, 3, dtype=torch.bool),
                        [["w"] * 3] * V, texts)
    frames = F.normalize(torch.randn(V, T, D), dim=-1)

    class Dims:  # what create_head reads off a backbone
        embed_dim, raw_dim, device = D, 0, torch.device("cuda")

    head = create_head(method, Dims(), num_frames=T, corpus=texts, temporal_layers=1).cuda()
    validation = ValidationData(frames[:16], None, text.select(range(16)), torch.arange(16), text.select(range(16)),
                                torch.arange(16))
    run = train_head(head, TrainData(frames, None, text, torch.arange(V)), TrainConfig(epochs=2, batch_size=16),
                     tmp_path, "test", T, validation=validation, log=lambda m: None)
    assert run.steps == 8 and head.device.type == "cuda"
    assert all(np.isfinite(r["loss"]) and 0 <= r["val_t2v"]["R@1"] <= 100 for r in run.history)
    assert torch.load(tmp_path / "best.pt", map_location="cpu", weights_only=True)["method"] == method
