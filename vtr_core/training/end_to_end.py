"""End-to-end fine-tuning: a backbone and a head trained together on decoded frames.

Heads usually train on stored features of a frozen backbone (vtr_core.training.loop). Here the
training videos are decoded once and kept as uint8 centre crops, and every step runs them through
the backbone, whose weights learn too (at BACKBONE_LR_SCALE times the head's learning rate). Only
a backbone that declares `trains_end_to_end` (see vtr_core.backbones.base.Backbone) can take part.
The tuned weights become a backbone of their own, and the head is tied to them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from vtr_core.backbones.base import Backbone, frames_to_tensor
from vtr_core.backbones.clip import weights_fingerprint
from vtr_core.errors import VtrError
from vtr_core.methods import RetrievalHead, save_head
from vtr_core.training.loop import (
    Stepper,
    StepProgressFn,
    TrainConfig,
    TrainResult,
    epoch_line,
    parameter_groups,
    sample_batches,
    steps_per_epoch,
)
from vtr_core.video import read_video

BACKBONE_LR_SCALE = 1e-3  # the papers: CLIP at 1e-7 while new parameters learn at 1e-4


@dataclass
class EndToEndData:
    """Decoded training videos as centre crops (uint8, so 700 videos fit in memory) and captions."""

    pixels: torch.Tensor  # uint8 [V, T, 3, S, S]
    captions: list[str]
    caption_video: torch.Tensor  # [C]


def require_end_to_end(backbone: Backbone) -> None:
    """The backbone's declared capability (`Backbone.trains_end_to_end`), checked before any work."""
    if not getattr(backbone, "trains_end_to_end", False):
        raise VtrError(f"end-to-end fine-tuning needs a clip backbone, not {backbone.spec}")


def prepare_pixels(paths: list, backbone: Backbone, num_frames: int,
                   progress: StepProgressFn | None = None) -> torch.Tensor:
    """Each video's sampled frames as uint8 centre crops at the backbone's image size [V, T, 3, S, S]."""
    require_end_to_end(backbone)
    crops = []
    for i, path in enumerate(paths):
        frames = read_video(path, num_frames).frames
        unit = frames_to_tensor(frames, backbone.image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), torch.device("cpu"))
        crops.append((unit * 255).round().to(torch.uint8))
        if progress:
            progress(i + 1, len(paths))
    return torch.stack(crops)


def decayed_groups(model: torch.nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups of a model's trainable parameters: matrices and kernels decayed, the rest not."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in trainable if p.dim() >= 2], "weight_decay": weight_decay, "lr": lr},
            {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0, "lr": lr}]


def joint_groups(head: RetrievalHead, model: torch.nn.Module, config: TrainConfig,
                 backbone_lr_scale: float) -> list[dict]:
    """The head's AdamW groups, then the backbone's at the scaled learning rate."""
    return parameter_groups(head, config.weight_decay) + decayed_groups(model, config.lr * backbone_lr_scale,
                                                                        config.weight_decay)


def _pixel_norm(backbone: Backbone) -> tuple[torch.Tensor, torch.Tensor]:
    """The backbone's normalisation (mean, std), shaped to apply to pixels [N, 3, S, S] on its device."""
    mean = torch.tensor(backbone.mean, device=backbone.device).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std, device=backbone.device).view(1, 3, 1, 1)
    return mean, std


def _joint_loss(backbone: Backbone, head: RetrievalHead, data: EndToEndData, videos: torch.Tensor,
                captions: torch.Tensor, num_frames: int, norm: tuple[torch.Tensor, torch.Tensor],
                ) -> tuple[torch.Tensor, dict]:
    """The head's loss on one batch, through the backbone (differentiable) from the stored crops."""
    mean, std = norm
    pixels = data.pixels[videos].to(backbone.device).flatten(0, 1).float().div_(255)
    features = backbone.forward_pixels((pixels - mean) / std)
    frames = features.frame.view(len(videos), num_frames, -1)
    patches = features.patches.view(len(videos), num_frames, -1, frames.shape[-1]) \
        if features.patches is not None else None
    text = backbone.forward_text([data.captions[c] for c in captions.tolist()])
    return head.loss(text, frames, patches)


def _save_tuned(backbone: Backbone, head: RetrievalHead, output_dir: Path, num_frames: int,
                config: TrainConfig) -> str:
    """backbone.pt (the tuned weights) and best.pt (the head, tied to them); the tuned backbone's spec."""
    spec = backbone.save_weights(output_dir / "backbone.pt")
    backbone_id = "clip:" + weights_fingerprint(backbone.model_name, str(output_dir / "backbone.pt"))
    save_head(head.cpu(), output_dir / "best.pt", backbone_id, num_frames,
              extra={"epoch": config.epochs - 1, "train_config": asdict(config), "end_to_end": True, "backbone": spec})
    return spec


def fine_tune(
    backbone: Backbone,
    head: RetrievalHead,
    data: EndToEndData,
    config: TrainConfig,
    output_dir: str | Path,
    num_frames: int,
    backbone_lr_scale: float = BACKBONE_LR_SCALE,
    log: Callable[[str], None] = print,
) -> tuple[TrainResult, str]:
    """Train the backbone (one that `trains_end_to_end`) and the head together on decoded frames.

    Returns the history and the spec of the fine-tuned backbone (its weights are saved as
    output_dir/backbone.pt); the head checkpoint (output_dir/best.pt, the last epoch) is tied to
    that backbone's id, so indexes must be rebuilt with it.
    """
    require_end_to_end(backbone)
    model = backbone.trainable()
    head.to(backbone.device)
    groups = joint_groups(head, model, config, backbone_lr_scale)
    num_videos = data.pixels.shape[0]
    stepper = Stepper.start(groups, config, steps_per_epoch(num_videos, data.caption_video, config.batch_size,
                                                    config.caption_passes))
    norm = _pixel_norm(backbone)
    result = TrainResult()
    started = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        head.train()
        losses = []
        for videos, captions in sample_batches(num_videos, data.caption_video, config.batch_size, stepper.generator,
                                           config.caption_passes):
            loss, parts = _joint_loss(backbone, head, data, videos, captions, num_frames, norm)
            stepper.step(loss, [p for g in groups for p in g["params"]], config.grad_clip)
            result.steps += 1
            losses.append(parts)
        record = {"epoch": epoch, **{k: sum(p[k] for p in losses) / len(losses) for k in losses[0]}}
        result.history.append(record)
        log(epoch_line(epoch, record))
    model.eval()
    head.eval()
    spec = _save_tuned(backbone, head, Path(output_dir), num_frames, config)
    result.best_epoch, result.seconds = config.epochs - 1, time.perf_counter() - started
    return result, spec
