"""Locked-image tuning of the lite text tower: `lite:PATH` backbones and `train --end-to-end` on lite.

The image side must stay exactly lite's (stored frame features remain valid), the tuned text
tower must be what queries go through, and tuning must never change the backbone other users of
the process share.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import write_video
from vtr_core.backbones import create_backbone
from vtr_core.backbones.lite import LITE_ID, save_text_tower, text_tower_id
from vtr_core.errors import BackboneError
from vtr_core.training.text_tower import TEXT_LR_SCALE

TEXTS = ["a man is cooking pasta", "a cartoon bird flaps its wings"]


@pytest.fixture(scope="module")
def tuned_tower(lite_backbone, tmp_path_factory):
    """A copy of the text tower with one matrix moved, saved as the training code saves it."""
    tower = lite_backbone.text_tower_copy()
    with torch.no_grad():
        layer = tower.model.encoder.layer[0].attention.self.query.weight
        layer.add_(0.05 * torch.randn(layer.shape, generator=torch.Generator().manual_seed(0)))
    path = tmp_path_factory.mktemp("tower") / "text_tower.pt"
    return tower, path, save_text_tower(tower, path, lite_backbone)


def test_a_tuned_tower_changes_queries_and_nothing_else(lite_backbone, tuned_tower, real_frames_small):
    tower, path, spec = tuned_tower
    before = lite_backbone.encode_text(TEXTS).sentence.clone()
    tuned = create_backbone(spec, "cpu")
    assert tuned.spec == spec == f"lite:{path.resolve()}" and tuned.id == text_tower_id(path) != LITE_ID
    assert tuned.frames_id == LITE_ID == lite_backbone.frames_id  # its frame features are lite's
    assert tuned.id.startswith(LITE_ID + "+text:sha256:")
    # queries: the tuned tower's (weights stored in float16), not lite's
    mine = tower(TEXTS).sentence
    theirs = tuned.encode_text(TEXTS).sentence
    assert (theirs - mine).abs().max() < 1e-3 and (theirs - before).abs().max() > 5e-3
    # frames: exactly lite's (ConSE's class embeddings come from the packaged MiniLM)
    assert torch.equal(tuned.class_embeddings, lite_backbone.class_embeddings)
    ours, lites = tuned.encode_frames(real_frames_small), lite_backbone.encode_frames(real_frames_small)
    assert torch.equal(ours.frame, lites.frame) and torch.equal(ours.patches, lites.patches)
    # the shared lite backbone was never touched
    assert torch.equal(lite_backbone.encode_text(TEXTS).sentence, before)


@pytest.fixture(scope="module")
def real_frames_small():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (3, 120, 160, 3), dtype=np.uint8)


def test_text_tower_files_that_do_not_fit_are_refused(tmp_path, lite_backbone):
    from vtr_core.backbones.lite import LiteBackbone

    cases = {
        "other.pt": ({"format": "vtr-head"}, "not a text tower saved by end-to-end training on lite"),
        "older.pt": ({"format": "vtr-lite-text-tower", "base": "lite:older", "state_dict": {}}, "tuned for lite:older"),
        "short.pt": ({"format": "vtr-lite-text-tower", "base": LITE_ID, "state_dict": {"x": torch.zeros(1)}},
                     "does not fit all-MiniLM-L6-v2"),
    }
    for name, (content, message) in cases.items():
        torch.save(content, tmp_path / name)
        with pytest.raises(BackboneError, match=message):
            LiteBackbone(torch.device("cpu"), text_tower=str(tmp_path / name))
    with pytest.raises(BackboneError, match="no such file"):
        LiteBackbone(torch.device("cpu"), text_tower=str(tmp_path / "missing.pt"))


def captioned_folder(folder, count: int = 6):
    captions = ["a red bar sweeps left", "a green square", "bright blue water", "a yellow sun",
                "dark purple night", "an orange ball"][:count]
    folder.mkdir()
    for i in range(count):
        write_video(folder / f"v{i}.mp4", num_frames=12, seed=i)
    (folder / "captions.jsonl").write_text("".join(json.dumps({"video_id": f"v{i}", "captions": [c, c + " again"]})
                                                   + "\n" for i, c in enumerate(captions)))
    return captions


def test_tuning_writes_a_backbone_and_a_head_tied_to_it(tmp_path, lite_backbone):
    from vtr_core.methods import create_head, load_head
    from vtr_core.training import TrainConfig, load_dataset, video_features
    from vtr_core.training.text_tower import CaptionedFeatures, tune_text_tower

    captioned_folder(tmp_path / "data")
    dataset = load_dataset(tmp_path / "data", "all")
    videos = video_features(dataset, lite_backbone, str(tmp_path / "cache"), num_frames=4)
    data = CaptionedFeatures(videos.frames, videos.patches, videos.raw, dataset.captions,
                             torch.as_tensor(dataset.caption_video), dataset.queries, torch.as_tensor(dataset.query_video))
    head = create_head("meanp", lite_backbone, num_frames=4)
    before = {k: v.clone() for k, v in lite_backbone.text_encoder.model.state_dict().items()}
    lines = []
    result, spec = tune_text_tower(lite_backbone, head, data, TrainConfig(epochs=3, batch_size=4, lr=1e-3, warmup=0.0),
                                   tmp_path / "run", 4, validation=data, text_lr_scale=0.1, log=lines.append)
    assert len(result.history) == 3 and len(lines) == 3 and result.steps == 3 * 2  # 6 videos, batches of 4
    assert result.best_score == max(r["val_rsum"] for r in result.history)
    assert result.best_epoch == [r["val_rsum"] for r in result.history].index(result.best_score)
    tuned = create_backbone(spec, "cpu")
    saved = torch.load(tmp_path / "run" / "text_tower.pt", weights_only=True)["state_dict"]
    changed = sum(int((saved[k] != v.half()).sum()) for k, v in before.items() if v.is_floating_point())
    assert changed > 1_000_000  # the tower learned: most of its 22M weights moved beyond float16 rounding
    assert all(torch.equal(v, lite_backbone.text_encoder.model.state_dict()[k]) for k, v in before.items())
    best = load_head(tmp_path / "run" / "best.pt", tuned, method="meanp", num_frames=4)
    with pytest.raises(Exception, match="trained on backbone"):
        load_head(tmp_path / "run" / "best.pt", lite_backbone, method="meanp", num_frames=4)
    # the saved pair scores as the run's best epoch did (float16 weights: within rounding)
    from vtr_core.training.text_tower import validate_with

    again = validate_with(tuned.text_encoder, best, data)
    assert again["val_rsum"] == pytest.approx(result.best_score, abs=100 / 6 + 1e-6)


def test_train_end_to_end_on_lite_tunes_the_text_tower(tmp_path, lite_backbone, capsys):
    from vtr_core.cli import main

    captioned_folder(tmp_path / "data", count=4)
    assert main(["train", "--method", "meanp", "--backbone", "lite", "--data-dir", str(tmp_path / "data"),
                 "--split", "all", "--end-to-end", "--epochs", "1", "--batch-size", "4", "--device", "cpu",
                 "--cache", str(tmp_path / "cache"), "--output", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    spec = f"lite:{(tmp_path / 'run' / 'text_tower.pt').resolve()}"
    assert f"backbone {spec}" in out and (tmp_path / "run" / "best.pt").is_file()
    checkpoint = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert checkpoint["backbone_id"] == text_tower_id(tmp_path / "run" / "text_tower.pt")
    assert checkpoint["training"]["text_lr_scale"] == TEXT_LR_SCALE == 1.0


def test_train_end_to_end_ship_names_the_tower_after_the_data(tmp_path, lite_backbone, capsys, monkeypatch):
    """--ship: precomputed/text_towers/lite-DATASET.pt and its head, found by `lite:DATASET` alone."""
    from vtr_core.cli import main
    from vtr_core.methods import resolve_head

    monkeypatch.setenv("VTR_DATA_DIR", str(tmp_path / "shipped"))
    captioned_folder(tmp_path / "colours", count=4)
    assert main(["train", "--method", "meanp", "--backbone", "lite", "--data-dir", str(tmp_path / "colours"),
                 "--split", "all", "--end-to-end", "--epochs", "1", "--batch-size", "4", "--device", "cpu",
                 "--cache", str(tmp_path / "cache"), "--output", str(tmp_path / "run"), "--ship"]) == 0
    assert "--backbone lite:colours" in capsys.readouterr().out
    shipped = tmp_path / "shipped" / "precomputed"
    tower = (tmp_path / "run" / "text_tower.pt").read_bytes()
    assert (shipped / "text_towers" / "lite-colours.pt").read_bytes() == tower
    backbone = create_backbone("lite:colours", "cpu")
    head, source = resolve_head("meanp", backbone, num_frames=4)
    assert source == str(shipped / "heads" / "meanp-lite-colours.pt")
    assert backbone.id == text_tower_id(tmp_path / "run" / "text_tower.pt")


def test_a_shipped_text_tower_is_named_by_its_file(tuned_tower, lite_backbone, tmp_path, monkeypatch):
    """`lite:NAME` loads precomputed/text_towers/lite-NAME.pt: a spec that stays valid wherever the
    files live, and whose heads ship as precomputed/heads/METHOD-lite-NAME.pt."""
    from vtr_core.backbones.lite import LiteBackbone
    from vtr_core.methods.checkpoints import backbone_slug

    _, path, _ = tuned_tower
    shipped = tmp_path / "precomputed" / "text_towers"
    shipped.mkdir(parents=True)
    (shipped / "lite-demo.pt").write_bytes(path.read_bytes())
    monkeypatch.setenv("VTR_DATA_DIR", str(tmp_path))
    named = LiteBackbone(torch.device("cpu"), text_tower="demo")
    assert named.spec == "lite:demo" and named.id == text_tower_id(path) and backbone_slug(named) == "lite-demo"
    with pytest.raises(BackboneError, match="lite0-demo.pt"):
        LiteBackbone(torch.device("cpu"), text_tower="demo", image_tower="lite0")


def test_a_tuned_text_tower_shares_its_image_towers_stored_features(tmp_path, lite_backbone, tuned_tower, monkeypatch):
    """Stored video features are keyed by frames_id: training a head on a tuned text tower reads
    the features its image tower already stored, without decoding a video again."""
    from vtr_core.training import caption_features, load_dataset, video_features

    captioned_folder(tmp_path / "data", count=3)
    dataset = load_dataset(tmp_path / "data", "all")
    stored = video_features(dataset, lite_backbone, str(tmp_path / "cache"), num_frames=4)
    tuned = create_backbone(tuned_tower[2], "cpu")
    monkeypatch.setattr("vtr_core.training.features.index_folder", lambda *a, **k: pytest.fail("encoded again"))
    shared = video_features(dataset, tuned, str(tmp_path / "cache"), num_frames=4)
    assert torch.equal(shared.frames, stored.frames) and torch.equal(shared.raw, stored.raw)
    assert shared.index.header.backbone_id == LITE_ID
    # captions are the tuned tower's own (cached apart from lite's)
    ours, lites = caption_features(dataset.captions, tuned, str(tmp_path / "cache")), \
        caption_features(dataset.captions, lite_backbone, str(tmp_path / "cache"))
    assert (ours.sentence - lites.sentence).abs().max() > 5e-3
