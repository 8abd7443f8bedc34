"""The lite backbone's frame encoder: EfficientNet-Lite0 features, ImageNet logits and ConSE.

On the CPU the same computation runs in a cheaper form, about twice the original's frames/s on
two cores. `python -m vtr_core bench indexing` measures each step against the one before (the
`encoder` section of docs/bench/indexing-cpu.json; figures in docs/PERFORMANCE.md):

- batch norm folded into the convolution weights (inference-time algebra: a third of the time
  went to batch norm, which only rescales and shifts the convolution's output);
- frames through the network in micro-batches, so the wide early activations stay in cache;
- the bicubic, antialiased resize and centre crop as banded matrix products whose weights are
  read off `F.interpolate` itself, computing only the pixels the crop keeps.

None of these changes what is computed beyond float32 rounding: frame vectors agree with the
original to 3e-7, patch tokens to float16's half step (1.2e-4), raw features to 1.5e-5. The one
exception is ConSE's top-10 cut: where a token's 10th and 11th class logits are within about 1e-5,
rounding may swap them (1 patch token in 22,932 on the 39 demo videos, moved by 0.03), as any
change of CPU or library can with the original code. tests/test_encoder_speed.py keeps the original
computation and compares; the backbone's id, stored indexes and trained heads stay valid. On a GPU
the original path runs unchanged (half precision under autocast).

Threads: the encoder uses torch's intra-op threads as the process set them (torch's default: one
per core) and never changes that process-wide setting. Measured on two cores: with the machine to
itself, 2 threads give 1.5-1.8x the frames/s of 1 (the pipeline, decode threads beside: 61 against
49). When other processes keep the cores busy (load 4-5), 2 threads fall to 10-18 frames/s while 1
thread keeps 40-57: OpenMP's threads spin at the barrier after each operation waiting for a
descheduled partner. OMP_WAIT_POLICY=PASSIVE (read when torch loads, so it belongs in the
environment or the entry point) lets them sleep instead: 48-62 frames/s at 2 threads on the busy
machine, the same pipeline speed on the quiet one (the encoder alone 10% slower). Hence micro-batches
grow with the threads: each thread's share of an operation stays 8 frames, not 4.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from vtr_core.backbones.base import FrameFeatures, autocast, frames_to_tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SIZE = 224
# Frames per pass through the CPU network, per torch thread (chosen by `bench indexing`, frames/s
# by micro-batch): the widest activation, 96 x 112 x 112 floats a frame, is 38 MB for 8 frames
# against 231 MB for 48, so far less of it leaves the cache. Per thread, so that each thread's
# share of every operation stays the same: with OpenMP's threads waiting on each other after
# every operation, smaller shares stall more often when other processes hold the cores.
FRAMES_PER_THREAD = 8


@dataclass(frozen=True)
class PixelSpec:
    """What an image tower takes: frames resized (shorter side) and centre-cropped to `size`, then
    normalised. TensorFlow-trained EfficientNet-Lites take [-1, 1] (mean and std 0.5)."""

    size: int = IMAGE_SIZE
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class EncoderSettings:
    """Which of the CPU optimisations run; all False / 0 is the original computation."""

    fold_batchnorm: bool = True
    micro_batch: int | None = None  # None: FRAMES_PER_THREAD per torch thread; 0: the whole batch at once
    matmul_resize: bool = True


REFERENCE = EncoderSettings(fold_batchnorm=False, micro_batch=0, matmul_resize=False)
# The optimisations in the order they were added: each entry's settings include those before it.
OPTIMISATIONS: tuple[tuple[str, EncoderSettings], ...] = (
    ("original", REFERENCE),
    ("fold batch norm into convolutions", replace(REFERENCE, fold_batchnorm=True)),
    (f"micro-batches of {FRAMES_PER_THREAD} frames per thread", replace(EncoderSettings(), matmul_resize=False)),
    ("resize and crop as banded matrix products", EncoderSettings()),
)


# ---------------------------------------------------------------- preprocessing
RESIZE_BLOCK = 32  # output pixels per block of the banded products


@functools.lru_cache(maxsize=32)
def resize_weights(length: int, new_length: int, start: int, size: int) -> torch.Tensor:
    """[length, size]: the weights by which bicubic antialiased resizing to `new_length` makes
    output pixels start .. start+size-1, read off `F.interpolate` applied to the identity (a few
    hundred rows at a time), so `x @ w` is the same resize and crop to float32 rounding. Shared:
    never modify it."""
    parts = []
    for first in range(0, length, 256):
        rows = torch.eye(length)[first : first + 256].view(-1, 1, 1, length)  # resized along the last axis
        parts.append(F.interpolate(rows, size=(1, new_length), mode="bicubic", align_corners=False,
                                   antialias=True)[:, 0, 0, start : start + size])
    return torch.cat(parts).contiguous()


@functools.lru_cache(maxsize=32)
def resize_bands(length: int, new_length: int, start: int, size: int) -> tuple[tuple[int, int, int, int], ...]:
    """(first row, end row, first column, end column) of each block of RESIZE_BLOCK output pixels:
    an output pixel only reads the few input pixels under its kernel, so each block multiplies by
    those rows alone instead of the whole (mostly zero) matrix."""
    nonzero = resize_weights(length, new_length, start, size) != 0
    bands = []
    for column in range(0, size, RESIZE_BLOCK):
        rows = nonzero[:, column : column + RESIZE_BLOCK].any(1).nonzero()
        bands.append((int(rows[0]), int(rows[-1]) + 1, column, min(column + RESIZE_BLOCK, size)))
    return tuple(bands)


def resize_rows(x: torch.Tensor, length: int, new_length: int, size: int) -> torch.Tensor:
    """[M, length] -> [M, size]: each row resized to `new_length` and centre-cropped to `size`."""
    start = (new_length - size) // 2
    weights = resize_weights(length, new_length, start, size)
    return torch.cat([x[:, r0:r1] @ weights[r0:r1, c0:c1] for r0, r1, c0, c1 in
                      resize_bands(length, new_length, start, size)], dim=1)


def frames_to_pixels(frames: np.ndarray, size: int = IMAGE_SIZE, mean: tuple[float, ...] = IMAGENET_MEAN,
                     std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> normalised float32 [N, 3, size, size], channels-last, on the CPU: what
    `frames_to_tensor` computes (shorter side to `size`, bicubic antialiased, centre crop), in
    half its time or less (F.interpolate resizes the whole frame, then the crop drops 40% of it)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
    count, _, height, width = x.shape
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    x = resize_rows(x.view(-1, width), width, new_w, size).view(count, 3, height, size)  # along the width
    x = resize_rows(x.transpose(2, 3).reshape(-1, height), height, new_h, size)  # along the height
    x = x.view(count, 3, size, size).transpose(2, 3).clamp_(0.0, 1.0)
    out = torch.empty((count, 3, size, size), memory_format=torch.channels_last)
    torch.sub(x, torch.tensor(mean).view(1, 3, 1, 1), out=out)
    return out.div_(torch.tensor(std).view(1, 3, 1, 1))


# ---------------------------------------------------------------- the network as convolution steps
@dataclass
class ConvStep:
    """One convolution with its batch norm folded in: conv -> (+ block input) -> (ReLU6)."""

    weight: torch.Tensor
    bias: torch.Tensor
    stride: list[int]
    padding: list[int]
    dilation: list[int]
    groups: int
    relu6: bool
    residual: bool = False
    same_padding: bool = False  # TensorFlow's SAME (timm's Conv2dSame): padded at run time, more after

    def __call__(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        if self.same_padding:
            from timm.layers.padding import pad_same

            x = pad_same(x, list(self.weight.shape[-2:]), self.stride, self.dilation)
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.residual:
            y = y + shortcut
        return F.hardtanh_(y, 0.0, 6.0) if self.relu6 else y

class UnsupportedModel(ValueError):
    """The timm model holds a layer the folded form does not handle (the original path then runs)."""


def fold(conv: torch.nn.Module, bn: torch.nn.Module) -> ConvStep:
    """A convolution and the BatchNormAct2d after it as one step (weights scaled, bias shifted)."""
    same_padding = type(conv).__name__ == "Conv2dSame"  # the TF-faithful (tf_) timm models
    if (type(conv) is not torch.nn.Conv2d and not same_padding) or not isinstance(conv.padding, tuple) \
            or conv.padding_mode != "zeros":
        raise UnsupportedModel(f"convolution {conv!r}")
    act, drop = getattr(bn, "act", torch.nn.Identity()), getattr(bn, "drop", torch.nn.Identity())
    if not isinstance(bn, torch.nn.BatchNorm2d) or type(act) not in (torch.nn.ReLU6, torch.nn.Identity) \
            or type(drop) is not torch.nn.Identity:
        raise UnsupportedModel(f"normalisation {bn!r}")
    with torch.no_grad():
        scale = bn.weight.float() / torch.sqrt(bn.running_var.float() + bn.eps)
        weight = (conv.weight.float() * scale.view(-1, 1, 1, 1)).contiguous(memory_format=torch.channels_last)
        bias = bn.bias.float() - bn.running_mean.float() * scale
        if conv.bias is not None:
            bias = bias + conv.bias.float() * scale
    return ConvStep(weight, bias.contiguous(), list(conv.stride), list(conv.padding), list(conv.dilation), conv.groups,
                    relu6=type(act) is torch.nn.ReLU6, same_padding=same_padding)


# which (convolution, norm) attributes each timm block applies, in order
BLOCK_LAYERS = {
    "DepthwiseSeparableConv": (("conv_dw", "bn1"), ("conv_pw", "bn2")),
    "InvertedResidual": (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
}


def block_steps(block: torch.nn.Module) -> list[ConvStep]:
    """A timm EfficientNet block as folded steps; its skip connection is added by the last."""
    layers = BLOCK_LAYERS.get(type(block).__name__)
    if layers is None:
        raise UnsupportedModel(f"block {type(block).__name__}")
    for name in ("aa", "se", "drop_path"):
        if type(getattr(block, name, torch.nn.Identity())) is not torch.nn.Identity:
            raise UnsupportedModel(f"{type(block).__name__}.{name}")
    if getattr(block, "conv_s2d", None) is not None:
        raise UnsupportedModel(f"{type(block).__name__}.conv_s2d")
    steps = [fold(getattr(block, conv), getattr(block, bn)) for conv, bn in layers]
    if getattr(block, "has_skip", False):
        if steps[-1].relu6:  # timm adds the skip after the activation; a step adds it before
            raise UnsupportedModel(f"{type(block).__name__}: activation before the skip connection")
        steps[-1].residual = True
    return steps


def folded_steps(model: torch.nn.Module) -> list[list[ConvStep]]:
    """timm's EfficientNet forward_features as groups of steps (each group: one residual scope)."""
    groups = [[fold(model.conv_stem, model.bn1)]]
    groups += [block_steps(block) for stage in model.blocks for block in stage]
    groups.append([fold(model.conv_head, model.bn2)])
    return groups


def all_steps(groups: list[list[ConvStep]]) -> list[ConvStep]:
    return [step for group in groups for step in group]


def run_steps(groups: list[list[ConvStep]], pixels: torch.Tensor) -> torch.Tensor:
    """The folded network on channels-last pixels: [N, 1280, 7, 7] float32."""
    x = pixels
    for group in groups:
        shortcut = x
        for step in group:
            x = step(x, shortcut)
    return x


class LiteFrameEncoder:
    """Frames -> FrameFeatures for the lite backbone: ConSE frame vectors, ConSE patch tokens (the
    7x7 map through the same classifier) and the pooled 1,280 channels as raw features.

    `settings` default to every CPU optimisation on a CPU and to the original path elsewhere;
    `with_settings` gives another encoder on the same weights (the bench compares them)."""

    def __init__(self, image_model: torch.nn.Module, conse, device: torch.device,
                 settings: EncoderSettings | None = None, pixel_spec: PixelSpec = PixelSpec()):
        self.image_model = image_model  # the timm model as loaded: never modified
        self.pixel_spec = pixel_spec
        self.classifier = image_model.get_classifier()
        self.conse = conse  # [..., 1000] logits -> [..., D] unit vectors
        self.device = device
        self.settings = settings or (EncoderSettings() if device.type == "cpu" else REFERENCE)
        self.steps: list[list[ConvStep]] | None = None
        self._ready = False  # folded on the first frames: a text-only process never pays
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Fold the weights once (a few milliseconds)."""
        with self._lock:
            if self._ready:
                return
            if self.settings.fold_batchnorm:
                try:
                    self.steps = folded_steps(self.image_model)
                except UnsupportedModel:
                    self.steps = None  # a model this file does not know: the original path
            if self.steps is not None:
                for step in all_steps(self.steps):
                    step.weight, step.bias = step.weight.to(self.device), step.bias.to(self.device)
            self._ready = True

    def with_settings(self, settings: EncoderSettings) -> "LiteFrameEncoder":
        return LiteFrameEncoder(self.image_model, self.conse, self.device, settings, self.pixel_spec)

    def describe(self) -> dict:
        """What actually runs (an unknown timm model keeps the original path)."""
        self.prepare()
        return {"batchnorm_folded": self.steps is not None,
                "micro_batch": self.micro_batch(0), "matmul_resize": self.matmul_resize,
                "torch_threads": torch.get_num_threads()}

    def micro_batch(self, count: int, threads: int | None = None) -> int:
        """Frames per pass through the network for a batch of `count`, at `threads` (default: torch's)."""
        if self.settings.micro_batch is None:
            return FRAMES_PER_THREAD * (threads or torch.get_num_threads())
        return self.settings.micro_batch or count

    @property
    def matmul_resize(self) -> bool:
        return self.settings.matmul_resize and self.device.type == "cpu"

    def pixels(self, frames: np.ndarray) -> torch.Tensor:
        size, mean, std = self.pixel_spec.size, self.pixel_spec.mean, self.pixel_spec.std
        if self.matmul_resize:
            return frames_to_pixels(frames, size, mean, std)
        pixels = frames_to_tensor(frames, size, mean, std, self.device)
        return pixels.contiguous(memory_format=torch.channels_last)

    def feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        """[N, 1280, H/32, W/32] float32."""
        if self.steps is None:
            with autocast(self.device):
                return self.image_model.forward_features(pixels).float()
        return run_steps(self.steps, pixels)

    def encode_part(self, frames: np.ndarray, patch_dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        feature_map = self.feature_map(self.pixels(frames))
        pooled = feature_map.mean((2, 3))  # [N, 1280]
        frame_logits = self.classifier(pooled)
        patch_logits = self.classifier(feature_map.flatten(2).transpose(1, 2))  # [N, 49, 1000]
        return self.conse(frame_logits), self.conse(patch_logits).to(patch_dtype), pooled

    @torch.no_grad()
    def __call__(self, frames: np.ndarray, patch_dtype: torch.dtype = torch.float32) -> FrameFeatures:
        self.prepare()
        step = max(1, self.micro_batch(len(frames)))
        parts = [self.encode_part(frames[i : i + step], patch_dtype) for i in range(0, max(1, len(frames)), step)]
        frame, patches, raw = (part[0] if len(parts) == 1 else torch.cat(part) for part in zip(*parts))
        return FrameFeatures(frame=frame.cpu(), patches=patches.cpu(), raw=raw.cpu())
