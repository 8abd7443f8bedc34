"""Tuning the last image stage(s) of a lite backbone on cached stage inputs (training/image_stage.py).

The cache must hold what the frozen part of the network computes (so the tuned stages see what
they will see at indexing time), the tuned weights must load as a backbone whose frame encoder
computes what training did, and nothing shared may change.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import write_video
from tests.test_text_tower import captioned_folder
from vtr_core.backbones import create_backbone
from vtr_core.backbones.lite import LITE_ID, LiteBackbone, save_text_tower, text_tower_id
from vtr_core.errors import BackboneError, VtrError
from vtr_core.training.image_stage import VIEWS, ImageStage, stage_inputs, tuned_prefixes
from vtr_core.video import read_video


def assert_features_match(ours, reference) -> None:
    """Stage-input features against the frame encoder: the cache is float16, so to its rounding."""
    frame, patches, raw = ours
    assert (frame - reference.frame).abs().max() < 1e-4
    # a patch token's ConSE top-10 cut may swap two classes whose logits are within the cache's rounding
    token_error = (patches - reference.patches.float()).abs().amax(-1)
    assert (token_error > 1e-3).float().mean() < 0.02 and token_error.max() < 0.05
    assert (raw - reference.raw).abs().max() < 1e-3 * reference.raw.abs().max()


@pytest.mark.parametrize("tower, stages", [("lite", 1), ("lite", 2), ("default", 1)])
def test_stage_inputs_through_the_stages_give_the_frame_encoders_features(tower, stages, request, tmp_path,
                                                                           monkeypatch):
    backbone = request.getfixturevalue("lite_backbone" if tower == "lite" else "default_backbone")
    write_video(tmp_path / "v.mp4", num_frames=12, seed=3)
    inputs = stage_inputs([tmp_path / "v.mp4"], backbone, stages, 5, root=tmp_path / "cache")
    assert inputs.shape[:3] == (1, len(VIEWS), 5) and inputs.dtype == torch.float16
    stage = ImageStage(backbone, stages)
    frames = read_video(tmp_path / "v.mp4", 5).frames
    with torch.no_grad():
        assert_features_match([f[0] for f in stage.features(inputs[:, 0], with_patches=True)],
                              backbone.encode_frames(frames))
        mirrored = backbone.encode_frames(np.ascontiguousarray(frames[:, :, ::-1]))
        assert_features_match([f[0] for f in stage.features(inputs[:, 1], with_patches=True)], mirrored)
        assert stage.features(inputs[:, 0])[1] is None  # patch tokens only when asked (a head that uses them)
    # cached: the same tensor again, with no decoding at all
    monkeypatch.setattr("vtr_core.training.image_stage.read_video", lambda *a: pytest.fail("decoded again"))
    assert torch.equal(stage_inputs([tmp_path / "v.mp4"], backbone, stages, 5, root=tmp_path / "cache"), inputs)


def test_only_the_last_stages_learn_and_batch_norm_keeps_its_statistics(lite_backbone):
    stage = ImageStage(lite_backbone, 1)
    learning = {name for name, p in stage.model.named_parameters() if p.requires_grad}
    assert learning and all(name.startswith(("blocks.6.", "conv_head.", "bn2.")) for name in learning)
    assert "conv_head.weight" in learning and not any(name.startswith("classifier") for name in learning)
    before = stage.model.bn2.running_mean.clone()
    stage.train()
    assert stage.training and not any(m.training for m in stage.modules() if isinstance(m, torch.nn.BatchNorm2d))
    stage(torch.randn(4, 192, 7, 7)).__getitem__(0).sum().backward()
    assert torch.equal(stage.model.bn2.running_mean, before)
    assert stage.model.conv_head.weight.grad is not None and stage.model.blocks[5][0].conv_pw.weight.grad is None
    assert set(stage.tuned_state()) == {k for k in stage.model.state_dict() if k.startswith(stage.prefixes)}
    with pytest.raises(VtrError, match=r"tuned image stages must be 1\.\.7 for this image tower, not 8"):
        tuned_prefixes(stage.model, 8)


def test_tuned_stages_load_as_a_backbone_that_encodes_as_training_did(lite_backbone, tmp_path):
    stage = ImageStage(lite_backbone, 1)
    with torch.no_grad():
        stage.model.conv_head.weight.mul_(1.5)
    path = tmp_path / "towers.pt"
    spec = save_text_tower(lite_backbone.text_tower_copy(), path, lite_backbone, stage.tuned_state())
    tuned = create_backbone(spec, "cpu")
    assert tuned.id == text_tower_id(path, LITE_ID, tunes_image=True) and tuned.id.startswith(LITE_ID + "+towers:")
    assert tuned.frames_id == tuned.id  # its own frame features: stored apart from lite's
    write_video(tmp_path / "v.mp4", num_frames=12, seed=4)
    inputs = stage_inputs([tmp_path / "v.mp4"], lite_backbone, 1, 4, root=tmp_path / "cache")
    frames = read_video(tmp_path / "v.mp4", 4).frames
    with torch.no_grad():
        assert_features_match([f[0] for f in stage.features(inputs[:, 0], with_patches=True)],
                              tuned.encode_frames(frames))
    assert (tuned.encode_frames(frames).raw - lite_backbone.encode_frames(frames).raw).abs().max() > 0.1
    # the tuned backbone holds the stage's weights; the shared one kept its own
    assert torch.equal(tuned.image_model.conv_head.weight, stage.model.conv_head.weight)
    assert torch.allclose(lite_backbone.image_model.conv_head.weight * 1.5, stage.model.conv_head.weight, rtol=1e-6, atol=0)


@pytest.mark.parametrize("key, tensor, message", [
    ("blocks.9.0.conv_pw.weight", torch.zeros(1), "image weight blocks.9.0.conv_pw.weight does not fit"),
    ("conv_head.weight", torch.zeros(3, 3), "image weight conv_head.weight does not fit efficientnet_lite0"),
])
def test_image_weights_that_do_not_fit_are_refused(lite_backbone, tmp_path, key, tensor, message):
    path = tmp_path / "bad.pt"
    save_text_tower(lite_backbone.text_tower_copy(), path, lite_backbone, {key: tensor})
    with pytest.raises(BackboneError, match=message):
        LiteBackbone(torch.device("cpu"), text_tower=str(path))


def test_tuning_image_stages_writes_a_backbone_whose_index_scores_as_validation_did(tmp_path, lite_backbone):
    from vtr_core.methods import create_head, load_head
    from vtr_core.training import TrainConfig, evaluate_head, load_dataset, video_features
    from vtr_core.training.text_tower import CaptionedFeatures, tune_text_tower

    captioned_folder(tmp_path / "data")
    dataset = load_dataset(tmp_path / "data", "all")
    videos = video_features(dataset, lite_backbone, str(tmp_path / "cache"), num_frames=4)
    inputs = stage_inputs(dataset.video_paths, lite_backbone, 1, 4, root=tmp_path / "cache")
    data = CaptionedFeatures(videos.frames, videos.patches, videos.raw, dataset.captions,
                             torch.as_tensor(dataset.caption_video), dataset.queries,
                             torch.as_tensor(dataset.query_video), stage_inputs=inputs)
    head = create_head("eercf", lite_backbone, num_frames=4)  # a head that reads patch tokens too
    shared = {k: v.clone() for k, v in lite_backbone.image_model.state_dict().items()}
    result, spec = tune_text_tower(lite_backbone, head, data, TrainConfig(epochs=2, batch_size=4, lr=1e-3, warmup=0.0),
                                   tmp_path / "run", 4, validation=data, image_stage=ImageStage(lite_backbone, 1),
                                   image_lr_scale=1.0, log=lambda line: None)
    stored = torch.load(tmp_path / "run" / "text_tower.pt", weights_only=True)["image_state_dict"]
    moved = sum(int((stored[k] != shared[k].float()).sum()) for k in stored if stored[k].is_floating_point())
    assert moved > 100_000  # the stage learned
    assert all(torch.equal(v, lite_backbone.image_model.state_dict()[k]) for k, v in shared.items())
    # the tuned backbone, through the ordinary indexing path, scores as the best epoch's validation
    tuned = create_backbone(spec, "cpu")
    best = load_head(tmp_path / "run" / "best.pt", tuned, method="eercf", num_frames=4)
    indexed = video_features(dataset, tuned, str(tmp_path / "cache"), num_frames=4)
    queries, captions = tuned.encode_text(dataset.queries), tuned.encode_text(dataset.captions)
    again = evaluate_head(best, indexed.frames, indexed.patches, queries, torch.as_tensor(dataset.query_video),
                          captions, torch.as_tensor(dataset.caption_video), rerank_top_k=best.eval_rerank_top_k,
                          raw=indexed.raw).plain["t2v"]
    assert again["R@1"] + again["R@5"] + again["R@10"] == pytest.approx(result.best_score, abs=100 / 6 + 1e-6)


def test_train_end_to_end_with_image_stages(tmp_path, lite_backbone, capsys):
    from vtr_core.cli import main

    captioned_folder(tmp_path / "data", count=4)
    assert main(["train", "--method", "meanp", "--backbone", "lite", "--data-dir", str(tmp_path / "data"),
                 "--split", "all", "--end-to-end", "--image-stages", "1", "--epochs", "1", "--batch-size", "4",
                 "--device", "cpu", "--cache", str(tmp_path / "cache"), "--output", str(tmp_path / "run")]) == 0
    assert f"backbone lite:{(tmp_path / 'run' / 'text_tower.pt').resolve()}" in capsys.readouterr().out
    checkpoint = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert checkpoint["backbone_id"].startswith(LITE_ID + "+towers:sha256:")
    assert checkpoint["training"]["image_stages"] == 1 and checkpoint["training"]["image_lr_scale"] == 0.1


@pytest.mark.parametrize("extra, message", [
    (["--end-to-end", "--image-stages", "9"], "error: tuned image stages must be 1..7 for this image tower, not 9 "
                                              "(--image-stages)"),
    (["--image-stages", "1"], "error: image stages are tuned end to end on a lite backbone (--end-to-end), not lite"),
])
def test_train_refuses_image_stages_it_cannot_tune(tmp_path, lite_backbone, capsys, extra, message):
    from vtr_core.cli import main

    captioned_folder(tmp_path / "data", count=2)
    assert main(["train", "--method", "meanp", "--backbone", "lite", "--data-dir", str(tmp_path / "data"),
                 "--split", "all", "--epochs", "1", "--device", "cpu", "--cache", str(tmp_path / "cache"),
                 "--output", str(tmp_path / "run"), *extra]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == message
    assert not (tmp_path / "run").exists()
