"""The last stage(s) of a lite image tower, tuned with its text tower and a head.

Below the tuned stages the EfficientNet stays frozen, and a frozen network gives the same output
for the same frame every time: so each training frame goes through the frozen part once, and its
output (the input of the tuned stages, 192 x 7 x 7 for Lite0's last stage) is cached as float16,
next to the other stored features. A step then costs the tuned stages alone, about a tenth of
the network. Augmentation is chosen at that point too: every video is cached as VIEWS (its frames
as decoded, and mirrored left to right), and each step takes one view per video at random.

Batch norm keeps ImageNet's running statistics (its scale and shift learn): the batches of 600
videos are too few to re-estimate them. The classifier and ConSE's class embeddings stay as
they are, so the tuned stage still speaks the ImageNet classes that ConSE turns into sentences.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vtr_core.backbones.lite import conse
from vtr_core.backbones.lite_frames import run_steps
from vtr_core.errors import VtrError
from vtr_core.indexing.indexer import ProgressFn
from vtr_core.storage import atomic_save_npy, cache_dir
from vtr_core.video import read_video

VIEWS = ("as decoded", "mirrored")


def tuned_prefixes(model: nn.Module, stages: int) -> tuple[str, ...]:
    """State-dict prefixes of the last `stages` stages and the 1x1 head convolution after them."""
    count = len(model.blocks)
    if not 1 <= stages <= count:
        raise VtrError(f"tuned image stages must be 1..{count} for this image tower, not {stages}", setting="image_stages")
    return tuple(f"blocks.{i}." for i in range(count - stages, count)) + ("conv_head.", "bn2.")


def trunk_groups(backbone, stages: int) -> int:
    """How many of the folded steps' groups (lite_frames.folded_steps: stem, one per block, head)
    come before the tuned stages."""
    model = backbone.image_model
    tuned_prefixes(model, stages)
    return 1 + sum(len(stage) for stage in model.blocks[: len(model.blocks) - stages])


@torch.no_grad()
def trunk_outputs(backbone, frames: np.ndarray, stages: int) -> torch.Tensor:
    """uint8 frames [N, H, W, 3] -> the frozen part's output [N, C, h, w] float32 (the CPU-folded
    network where it runs, else timm's modules)."""
    encoder, model = backbone.frame_encoder, backbone.image_model
    encoder.prepare()
    trunk = None if encoder.steps is None else encoder.steps[: trunk_groups(backbone, stages)]
    step = max(1, encoder.micro_batch(len(frames)))  # the frame encoder's own batching
    outputs = []
    for start in range(0, len(frames), step):
        pixels = encoder.pixels(frames[start : start + step])
        if trunk is not None:
            outputs.append(run_steps(trunk, pixels))
        else:
            x = model.bn1(model.conv_stem(pixels.to(backbone.device)))
            outputs.append(model.blocks[: len(model.blocks) - stages](x).float())
    return torch.cat(outputs).cpu()


def stage_inputs(video_paths: list[Path], backbone, stages: int, num_frames: int,
                 root: str | Path | None = None, progress: ProgressFn | None = None) -> torch.Tensor:
    """float16 [V, len(VIEWS), T, C, h, w]: the frozen part's output for every view of each video's
    sampled frames, computed once and cached on disk by (image tower, videos, frames, stages)."""
    key = json.dumps([backbone.base_id, [str(Path(p).resolve()) for p in video_paths], num_frames, stages, VIEWS])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = Path(root) if root else cache_dir() / "features"
    path = path / f"stage-inputs-{backbone.image_tower.name}-{digest}.npy"
    if path.is_file():
        try:
            return torch.from_numpy(np.load(path))
        except (OSError, ValueError):  # a damaged cache is recomputed, never trusted
            pass
    videos = []
    for i, video in enumerate(video_paths):
        frames = read_video(video, num_frames).frames
        views = [frames, np.ascontiguousarray(frames[:, :, ::-1])]
        videos.append(torch.stack([trunk_outputs(backbone, view, stages) for view in views]).half())
        if progress:
            progress(i + 1, len(video_paths), Path(video).name)
    stacked = torch.stack(videos)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(path, stacked.numpy())
    return stacked


class ImageStage(nn.Module):
    """A trainable copy of the tuned stages (and the frozen classifier after them): their input
    -> what the backbone's frame encoder gives (ConSE frame vectors, ConSE patch tokens, pooled
    raw features). The backbone's own image model never changes."""

    def __init__(self, backbone, stages: int):
        super().__init__()
        self.model = copy.deepcopy(backbone.image_model).float()
        self.stages, self.prefixes = stages, tuned_prefixes(self.model, stages)
        self.first_block = len(self.model.blocks) - stages
        for name, parameter in self.model.named_parameters():
            parameter.requires_grad_(name.startswith(self.prefixes))
        self.register_buffer("class_embeddings", backbone.class_embeddings.detach().clone())
        self.train(False)

    def train(self, mode: bool = True) -> "ImageStage":
        """Dropout and the like follow `mode`; batch norm always keeps its running statistics."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def forward(self, inputs: torch.Tensor, with_patches: bool = False):
        """[N, C, h, w] -> (frame [N, D], patches [N, P, D] or None, raw [N, R])."""
        x = inputs.float().contiguous(memory_format=torch.channels_last)
        x = self.model.blocks[self.first_block :](x)
        feature_map = self.model.bn2(self.model.conv_head(x))
        pooled = feature_map.mean((2, 3))
        classifier = self.model.get_classifier()
        frame = conse(classifier(pooled), self.class_embeddings)
        patches = conse(classifier(feature_map.flatten(2).transpose(1, 2)), self.class_embeddings) if with_patches else None
        return frame, patches, pooled

    def features(self, inputs: torch.Tensor, with_patches: bool = False):
        """Stored-feature shapes from [V, T, C, h, w]: frames [V, T, D], patches [V, T, P, D] or
        None, raw [V, T, R]."""
        videos, frames = inputs.shape[:2]
        frame, patches, raw = self(inputs.flatten(0, 1), with_patches)
        return (frame.view(videos, frames, -1), None if patches is None else patches.view(videos, frames, *patches.shape[1:]),
                raw.view(videos, frames, -1))

    def tuned_state(self) -> dict[str, torch.Tensor]:
        """The tuned tensors under the timm model's own names (buffers of batch norm included)."""
        return {k: v.detach() for k, v in self.model.state_dict().items() if k.startswith(self.prefixes)}
