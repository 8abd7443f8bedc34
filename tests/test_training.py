"""Training on stored features: it learns, it resumes exactly, and it runs data-parallel."""

import json
import socket
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO
from vtr_core.errors import VtrError
from vtr_core.index import VideoIndex
from vtr_core.methods import create_head, load_head
from vtr_core.training import (
    EndToEndData,
    TrainConfig,
    TrainData,
    evaluate_head,
    fine_tune,
    prepare_pixels,
    train_head,
    warmup_cosine,
)


@pytest.fixture(scope="module")
def demo_data(default_backbone):
    """The demo collection: 39 real clips (stored features) and their 116 captions."""
    index = VideoIndex.open(REPO / "precomputed" / "demo_index", backbone_id=default_backbone.id)
    rows = [json.loads(line) for line in (REPO / "assets" / "captions.jsonl").read_text().splitlines()]
    order = [index.row_of(row["video_id"]) for row in rows]
    captions = [c for row in rows for c in row["captions"]]
    caption_video = torch.tensor([i for i, row in enumerate(rows) for _ in row["captions"]])
    frames = torch.from_numpy(index.frame_features(order))
    return TrainData(frames, None, default_backbone.encode_text(captions), caption_video)


def recall_sum(head, data: TrainData) -> float:
    first = torch.tensor([int(torch.nonzero(data.caption_video == v)[0]) for v in range(len(data.frames))])
    result = evaluate_head(head, data.frames, None, data.captions.select(first), torch.arange(len(first)),
                           data.captions, data.caption_video)
    t2v = result.plain["t2v"]
    return t2v["R@1"] + t2v["R@5"] + t2v["R@10"]


def test_warmup_cosine_schedule():
    assert [round(warmup_cosine(s, 10, 2), 4) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]


def test_caption_passes_draw_each_caption_once_per_epoch():
    """`caption_passes` rounds per epoch: every round takes each video once, batches never repeat a
    video, and a video's captions are drawn without replacement (cycling only when it has fewer)."""
    from vtr_core.training.loop import sample_batches, steps_per_epoch

    counts = [3, 3, 2, 1, 3]  # captions of each of five videos
    caption_video = torch.tensor([v for v, n in enumerate(counts) for _ in range(n)])
    batches = sample_batches(5, caption_video, 2, torch.Generator().manual_seed(0), passes=3)
    assert len(batches) == steps_per_epoch(5, caption_video, 2, passes=3) == 3 * 2  # 2+2 per round, a lone 5th dropped
    drawn = {v: [] for v in range(5)}
    for videos, captions in batches:
        assert len(set(videos.tolist())) == len(videos) and (caption_video[captions] == videos).all()
        for v, c in zip(videos.tolist(), captions.tolist()):
            drawn[v].append(c)
    for v, picks in drawn.items():
        assert len(picks) <= 3 and len(set(picks)) == min(len(picks), counts[v])
    assert sum(map(len, drawn.values())) == 12  # 3 rounds x 4 videos (the odd one out of each round)


@pytest.mark.parametrize("name", ["meanp", "eercf"])
def test_training_lowers_loss_and_raises_recall(demo_data, default_backbone, tmp_path, name):
    head = create_head(name, default_backbone, num_frames=12, temporal_layers=1)
    before = recall_sum(head, demo_data)
    config = TrainConfig(epochs=12, batch_size=16, lr=3e-3, seed=0)
    result = train_head(head, demo_data, config, tmp_path, default_backbone.id, 12, log=lambda m: None)
    losses = [record["loss"] for record in result.history]
    assert losses[-1] < 0.8 * losses[0]
    assert recall_sum(head, demo_data) > before + 10  # on the training clips themselves
    best = load_head(tmp_path / "best.pt", default_backbone, method=name, num_frames=12)
    assert best.name == name


def test_resume_continues_exactly(demo_data, default_backbone, tmp_path):
    config = TrainConfig(epochs=4, batch_size=16, lr=3e-3, seed=0)
    straight = create_head("meanp", default_backbone, num_frames=12)
    train_head(straight, demo_data, config, tmp_path / "straight", default_backbone.id, 12, log=lambda m: None)

    def interrupt_after_second_epoch(message: str) -> None:
        if message.startswith("epoch 1:"):  # logged right after last.pt is written
            raise KeyboardInterrupt

    interrupted = create_head("meanp", default_backbone, num_frames=12)
    with pytest.raises(KeyboardInterrupt):
        train_head(interrupted, demo_data, config, tmp_path / "resumed", default_backbone.id, 12,
                   log=interrupt_after_second_epoch)
    # a fresh process would start from scratch: a new head, then resume from last.pt
    resumed = create_head("meanp", default_backbone, num_frames=12)
    messages = []
    result = train_head(resumed, demo_data, config, tmp_path / "resumed", default_backbone.id, 12, resume=True,
                        log=messages.append)
    assert messages[0].startswith("resumed from") and len(result.history) == 4
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_torchrun_step_equals_one_process(tmp_path):
    """gloo, 2 ranks x 4 samples: the averaged gradients equal one process on all 8 samples."""
    out = tmp_path / "ddp.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(REPO / "tests" / "ddp_worker.py"), str(out)]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                               env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    assert completed.returncode == 0, completed.stderr[-3000:]
    distributed = torch.load(out, weights_only=True)

    sys.path.insert(0, str(REPO / "tests"))
    import ddp_worker

    text, frames, patches = ddp_worker.batch()
    for name in ("eercf", "s3ma"):
        head = ddp_worker.build(name).eval()
        loss, _ = head.loss(text, frames, patches)
        loss.backward()
        reference = ddp_worker.gradients(head)
        assert distributed[name]["loss"] == pytest.approx(loss.item(), abs=1e-5)
        assert reference.keys() == distributed[name]["grads"].keys()
        for key, grad in reference.items():
            assert torch.allclose(grad, distributed[name]["grads"][key], atol=1e-5), (name, key)


def test_end_to_end_fine_tuning_of_a_clip_backbone(tmp_path, video_folder, lite_backbone):
    """The tiny CLIP model and a head train together; the tuned weights become a loadable backbone."""
    from tests.conftest import save_tiny_clip
    from vtr_core.backbones import create_backbone

    _, checkpoint = save_tiny_clip(tmp_path, "tiny-e2e")
    backbone = create_backbone(f"clip:tiny-e2e/{checkpoint}", "cpu")
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}

    paths = sorted(video_folder.glob("*.mp4"))
    pixels = prepare_pixels(paths, backbone, num_frames=3)
    assert pixels.dtype == torch.uint8 and pixels.shape == (5, 3, 3, 32, 32)
    captions = ["a red bar", "a green dog", "a blue car", "a yellow cat", "a white house"]
    data = EndToEndData(pixels, captions, torch.arange(5))
    head = create_head("eercf", backbone, num_frames=3, temporal_layers=1)
    result, spec = fine_tune(backbone, head, data, TrainConfig(epochs=20, batch_size=5, lr=1e-2, seed=0),
                             tmp_path / "run", num_frames=3, backbone_lr_scale=0.1, log=lambda m: None)
    losses = [r["loss"] for r in result.history]
    assert sum(losses[-3:]) / 3 < 0.7 * losses[0]  # five pairs, memorised
    changed = [k for k, v in backbone.model.state_dict().items() if not torch.equal(v, before[k])]
    assert "visual.proj" in changed and "text_projection" in changed

    tuned = create_backbone(spec, "cpu")  # the saved weights are a backbone spec of their own
    assert tuned.id != backbone.id
    assert torch.allclose(tuned.encode_text(["a moving bar"]).sentence, backbone.encode_text(["a moving bar"]).sentence, atol=1e-5)
    trained_head = load_head(tmp_path / "run" / "best.pt", tuned, method="eercf", num_frames=3)
    assert trained_head.name == "eercf"


def test_end_to_end_fine_tuning_needs_the_declared_capability(tmp_path, lite_backbone):
    """fine_tune asks the backbone's `trains_end_to_end`, not whether it happens to have forward_pixels."""
    from vtr_core.backbones.clip import ClipBackbone
    from vtr_core.backbones.lite import LiteBackbone

    assert LiteBackbone.trains_end_to_end is False and lite_backbone.trains_end_to_end is False
    assert ClipBackbone.trains_end_to_end is True
    data = EndToEndData(torch.zeros(2, 3, 3, 8, 8, dtype=torch.uint8), ["a dog", "a cat"], torch.arange(2))
    head = create_head("meanp", lite_backbone, num_frames=3)
    with pytest.raises(VtrError) as refused:
        fine_tune(lite_backbone, head, data, TrainConfig(epochs=1), tmp_path / "lite", num_frames=3)
    assert str(refused.value) == "end-to-end fine-tuning needs a clip backbone, not lite"

    class PixelsWithoutTheCapability(LiteBackbone):  # what a hasattr(forward_pixels) check would let through
        def __init__(self):  # no models loaded: fine_tune must refuse before touching any
            self.device, self.spec = torch.device("cpu"), "lite"

        def forward_pixels(self, pixels):
            raise AssertionError("fine_tune ran a backbone that does not declare trains_end_to_end")

    with pytest.raises(VtrError, match="^end-to-end fine-tuning needs a clip backbone, not lite$"):
        fine_tune(PixelsWithoutTheCapability(), head, data, TrainConfig(epochs=1), tmp_path / "fake", num_frames=3)
    assert not (tmp_path / "lite").exists() and not (tmp_path / "fake").exists()
    # the CLI decodes the training clips first: that refuses too, before a single video is read
    with pytest.raises(VtrError, match="^end-to-end fine-tuning needs a clip backbone, not lite$"):
        prepare_pixels([tmp_path / "not-even-a-file.mp4"], lite_backbone, num_frames=3)
