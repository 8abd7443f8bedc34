"""The lite frame encoder's CPU optimisations compute what the original code computed.

Stored indexes and the shipped trained heads hold features of the original computation, so the
faster form must agree with it to within float16 storage precision. The original is kept here,
written out as it was, rather than taken from the code under test. Speed lives in
`python -m vtr_core bench indexing`, not here.
"""

import copy

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from vtr_core.backbones.base import FrameFeatures, frames_to_tensor
from vtr_core.backbones.lite_frames import (
    FRAMES_PER_THREAD,
    IMAGE_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPTIMISATIONS,
    REFERENCE,
    EncoderSettings,
    LiteFrameEncoder,
    frames_to_pixels,
    resize_weights,
)
from vtr_core.video import read_video

LITE_ID = "lite:efficientnet_lite0+all-MiniLM-L6-v2/conse-top10-T3-t3-raw-v2"  # as stored in existing indexes
UNIT_ATOL = 2e-3  # unit-normalised features: float16 keeps about 1e-3 of them
RAW_RTOL = 1e-3  # raw features (up to about 6): float16's relative precision
# ConSE keeps the top 10 classes: where the 10th and 11th logits of a token are this close, float32
# rounding (the raw features move by about 1e-5) may swap them and move the token by ~0.02. The
# original code does the same between CPUs and libraries; 1 token in 22,932 on the 39 demo videos.
NEAR_TIE = 1e-4


def original_encode_frames(backbone, frames: np.ndarray, patch_dtype: torch.dtype = torch.float32):
    """LiteBackbone.encode_frames before the CPU optimisations, verbatim; with each frame's and
    patch's gap between its 10th and 11th class logits."""
    with torch.no_grad():
        pixels = frames_to_tensor(frames, IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD, backbone.device)
        pixels = pixels.contiguous(memory_format=torch.channels_last)
        feature_map = backbone.image_model.forward_features(pixels).float()  # [N, 1280, 7, 7]
        classifier = backbone.image_model.get_classifier()
        pooled = feature_map.mean((2, 3))
        frame_logits = classifier(pooled)
        patch_logits = classifier(feature_map.flatten(2).transpose(1, 2))
        features = FrameFeatures(frame=backbone.conse(frame_logits),
                                 patches=backbone.conse(patch_logits).to(patch_dtype), raw=pooled)
    gaps = [logits.topk(11, dim=-1).values.diff(dim=-1)[..., 9].abs() for logits in (frame_logits, patch_logits)]
    return features, *gaps


def assert_close_tokens(got: torch.Tensor, expected: torch.Tensor, gap: torch.Tensor) -> None:
    """Every token within UNIT_ATOL, but for top-10 near ties (at most 1%)."""
    far = (got.float() - expected.float()).abs().amax(-1) > UNIT_ATOL
    assert bool((gap[far] < NEAR_TIE).all()), f"{int(far.sum())} tokens differ, not at near ties: {gap[far]}"
    assert int(far.sum()) <= max(1, far.numel() // 100)


def assert_same_features(got: FrameFeatures, expected: FrameFeatures, frame_gap: torch.Tensor,
                         patch_gap: torch.Tensor) -> None:
    assert got.frame.shape == expected.frame.shape and got.patches.shape == expected.patches.shape
    assert got.frame.dtype == expected.frame.dtype and got.patches.dtype == expected.patches.dtype
    assert_close_tokens(got.frame, expected.frame, frame_gap)
    assert_close_tokens(got.patches, expected.patches, patch_gap)
    assert torch.allclose(got.raw, expected.raw, atol=RAW_RTOL, rtol=RAW_RTOL)


@pytest.fixture(scope="module")
def real_frames() -> np.ndarray:
    """37 frames of demo videos (not a multiple of any micro-batch): real content, so ConSE's top
    classes are far apart as in use, not the near ties of noise images."""
    paths = sorted((REPO / "assets" / "videos").glob("*.mp4"))[:4]
    frames = np.concatenate([read_video(p, num_frames=10).frames for p in paths])[:37]
    assert frames.dtype == np.uint8 and len(frames) == 37
    return frames


def test_id_is_unchanged(lite_backbone):
    """Same features, same id: indexes built before stay valid, and so do the trained heads."""
    assert lite_backbone.id == LITE_ID
    assert lite_backbone.frame_encoder.settings == EncoderSettings()  # the optimised path is the one in use


def test_encode_frames_matches_the_original(lite_backbone, real_frames, video_file):
    for frames in (real_frames, read_video(video_file, num_frames=5).frames):  # 180x320 and 120x160
        for patch_dtype in (torch.float32, torch.float16):
            got = lite_backbone.encode_frames(frames, patch_dtype=patch_dtype)
            assert_same_features(got, *original_encode_frames(lite_backbone, frames, patch_dtype))
    described = lite_backbone.frame_encoder.describe()
    assert described["batchnorm_folded"] and described["matmul_resize"]


@pytest.mark.parametrize("shape", [(5, 640, 360), (3, 1080, 1920), (4, 224, 224), (6, 50, 90)])
def test_other_frame_sizes_match_the_original(lite_backbone, real_frames, shape):
    """Portrait, downscaled (antialiasing matters), unscaled and tiny upscaled frames."""
    count, height, width = shape
    rows = np.linspace(0, real_frames.shape[1] - 1, height).round().astype(int)
    cols = np.linspace(0, real_frames.shape[2] - 1, width).round().astype(int)
    frames = np.ascontiguousarray(real_frames[:count][:, rows][:, :, cols])
    assert_same_features(lite_backbone.encode_frames(frames), *original_encode_frames(lite_backbone, frames))


def test_every_optimisation_step_matches_the_original(lite_backbone, real_frames):
    frames = real_frames[::2]  # 19 frames: micro-batches and a part
    expected = original_encode_frames(lite_backbone, frames, torch.float16)
    names = [name for name, _ in OPTIMISATIONS]
    assert names[0] == "original" and OPTIMISATIONS[0][1] == REFERENCE and OPTIMISATIONS[-1][1] == EncoderSettings()
    for _, settings in OPTIMISATIONS[1:]:
        encoder = lite_backbone.frame_encoder.with_settings(settings)
        assert_same_features(encoder(frames, patch_dtype=torch.float16), *expected)
    for micro_batch in (1, 7, 0):
        encoder = lite_backbone.frame_encoder.with_settings(EncoderSettings(micro_batch=micro_batch))
        assert_same_features(encoder(real_frames[:9], patch_dtype=torch.float16),
                             *original_encode_frames(lite_backbone, real_frames[:9], torch.float16))


def test_original_settings_are_the_original_computation(lite_backbone, real_frames):
    encoder = lite_backbone.frame_encoder.with_settings(REFERENCE)
    got, (expected, _, _) = encoder(real_frames[:6]), original_encode_frames(lite_backbone, real_frames[:6])
    assert torch.equal(got.frame, expected.frame) and torch.equal(got.patches, expected.patches)
    assert torch.equal(got.raw, expected.raw)


def test_outputs_are_plain_tensors_without_gradients(lite_backbone, real_frames):
    """Inference mode stays inside the encoder: callers may change the features in place or train
    a head from them; no setting builds an autograd graph."""
    for settings in (EncoderSettings(), REFERENCE):
        got = lite_backbone.frame_encoder.with_settings(settings)(real_frames[:2])
        for tensor in (got.frame, got.patches, got.raw):
            assert not tensor.is_inference() and not tensor.requires_grad and tensor.grad_fn is None
    weight = torch.ones(384, requires_grad=True)
    (got.frame * weight).sum().backward()
    got.frame.mul_(2.0)
    assert weight.grad is not None


def test_no_frames(lite_backbone):
    empty = lite_backbone.encode_frames(np.zeros((0, 120, 160, 3), np.uint8))
    assert empty.frame.shape == (0, 384) and empty.patches.shape == (0, 49, 384) and empty.raw.shape == (0, 1280)


def test_unknown_layers_fall_back_to_the_original_path(lite_backbone, real_frames):
    """A layer the folded form does not know (here an extra activation) leaves timm's forward."""
    model = copy.deepcopy(lite_backbone.image_model)
    model.blocks[1][0].se = torch.nn.Hardtanh(-3.0, 3.0)
    encoder = LiteFrameEncoder(model, lite_backbone.conse, torch.device("cpu"))
    assert not encoder.describe()["batchnorm_folded"]
    reference = LiteFrameEncoder(model, lite_backbone.conse, torch.device("cpu"), REFERENCE)
    got, expected = encoder(real_frames[:3]), reference(real_frames[:3])
    assert torch.allclose(got.frame, expected.frame, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 180, 320), (2, 320, 180), (2, 1080, 1920), (2, 224, 224), (2, 37, 50),
                                   (1, 224, 300)])
def test_matrix_resize_is_interpolate(shape):
    frames = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    expected = frames_to_tensor(frames, IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD, torch.device("cpu"))
    got = frames_to_pixels(frames)
    assert got.shape == expected.shape == (shape[0], 3, IMAGE_SIZE, IMAGE_SIZE)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(got, expected, atol=2e-5, rtol=0)


def test_resize_weights_are_a_normalised_band():
    weights = resize_weights(180, 224, 0, 224)  # upscaling: a 4-tap bicubic kernel per output pixel
    assert weights.shape == (180, 224)
    assert torch.allclose(weights.sum(0), torch.ones(224), atol=1e-6)
    assert int((weights != 0).sum(0).max()) <= 5
    cropped = resize_weights(320, 398, 87, 224)
    assert torch.equal(cropped, resize_weights(320, 398, 0, 398)[:, 87 : 87 + 224])


def test_encoder_bench_figures(lite_backbone, real_frames):
    """The bench's encoder-only section: its fields and the ratios between its figures."""
    from vtr_core.studies.bench.indexing import encoder_speed, hours_per_hour

    assert hours_per_hour(90.0, 2700.0) == pytest.approx(120.0)
    result = encoder_speed(lite_backbone, real_frames[:2], batch=2, rounds=1, frames_per_hour=2700.0)
    steps = result["optimisations"]
    assert [s["step"] for s in steps] == [name for name, _ in OPTIMISATIONS]
    assert steps[0]["ratio_to_original"] == 1.0 and all(s["frames_per_s"] > 0 for s in steps)
    for before, after in zip(steps, steps[1:]):
        assert after["ratio_to_previous"] == pytest.approx(after["frames_per_s"] / before["frames_per_s"], rel=0.02)
    assert result["frames_per_s"] == steps[-1]["frames_per_s"]
    assert set(result["frames_per_s_by_micro_batch"]) >= {"4", "8", "16", "32", "0"}
    assert str(torch.get_num_threads()) in result["frames_per_s_by_threads"]
    assert result["hours_of_video_per_hour"] == pytest.approx(result["frames_per_s"] * 3600 / 2700, rel=0.01)
    assert result["settings"]["micro_batch"] == FRAMES_PER_THREAD * torch.get_num_threads()
