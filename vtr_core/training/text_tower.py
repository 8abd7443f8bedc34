"""Locked-image tuning of the lite backbone's text tower (LiT, Zhai et al. 2022).

The text tower (MiniLM) learns together with a head, at TEXT_LR_SCALE times the head's learning
rate, against stored features of the frozen image side: no frame is decoded or encoded again,
and a step costs one MiniLM forward and backward over the batch's captions. The epoch with the
best validation R@1+R@5+R@10 is kept (and training stops PATIENCE epochs after it). The tuned
tower becomes the backbone `lite:DIR/text_tower.pt`, whose frame features equal lite's; the head
is tied to its id, so indexes are built (or rebuilt) with it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from vtr_core.errors import VtrError
from vtr_core.methods import RetrievalHead, save_head
from vtr_core.training.end_to_end import decayed_groups, joint_groups
from vtr_core.training.image_stage import ImageStage
from vtr_core.training.evaluate import evaluate_head
from vtr_core.training.loop import (
    Stepper,
    TrainConfig,
    TrainResult,
    epoch_line,
    sample_batches,
    steps_per_epoch,
)

TEXT_LR_SCALE = 1.0  # the tower's learning rate over the head's (at lr 1e-4: val R-sum 157.4 vs 150.4 frozen)
PATIENCE = 5
IMAGE_LR_SCALE = 0.1  # tuned image stages' learning rate over the head's (ImageNet features: a smaller step)
VALIDATION_CHUNK = 50  # videos per pass through the tuned image stages when validating


@dataclass
class CaptionedFeatures:
    """Stored features of some videos, with their captions as text (encoded anew at each step)."""

    frames: torch.Tensor  # [V, T, D]
    patches: torch.Tensor | None  # [V, T, P, D]
    raw: torch.Tensor | None  # [V, T, R]
    captions: list[str]
    caption_video: torch.Tensor  # [C]
    queries: list[str] | None = None  # validation: one query per video (text-to-video)
    query_video: torch.Tensor | None = None
    stage_inputs: torch.Tensor | None = None  # [V, views, T, C, h, w]: tuned image stages' input (image_stage.py)

    def video_features(self, videos: torch.Tensor, stage, views: torch.Tensor | None, with_patches: bool,
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(frames, patches, raw) of some videos on `device`: stored, or through the tuned image
        stages from their cached input (`views`: one per video; None: the frames as decoded)."""
        if stage is None:
            optional = [None if t is None else t[videos].to(device).float() for t in (self.patches, self.raw)]
            return self.frames[videos].to(device).float(), *optional
        inputs = self.stage_inputs[videos, 0 if views is None else views].to(device)
        return stage.features(inputs, with_patches)


def require_text_tuning(backbone) -> None:
    if not getattr(backbone, "tunes_text_tower", False):
        raise VtrError(f"text-tower tuning needs the lite backbone, not {backbone.spec}")


def validate_with(tower, head: RetrievalHead, data: CaptionedFeatures, stage=None) -> dict:
    """Both directions on held-out videos with the towers as they are now; R@1+R@5+R@10 to select by."""
    with torch.no_grad():
        queries, captions = tower(data.queries), tower(data.captions)
        frames, patches, raw = data.frames, data.patches, data.raw
        if stage is not None:
            parts = [data.video_features(torch.arange(i, min(i + VALIDATION_CHUNK, len(data.frames))), stage, None,
                                         head.uses_patches, head.device) for i in range(0, len(data.frames), VALIDATION_CHUNK)]
            frames, patches, raw = (None if part[0] is None else torch.cat(part).cpu() for part in zip(*parts))
    result = evaluate_head(head, frames, patches, queries, data.query_video, captions,
                           data.caption_video, rerank_top_k=head.eval_rerank_top_k, raw=raw)
    t2v = result.plain["t2v"]
    return {"val_t2v": t2v, "val_v2t": result.plain["v2t"], "val_rsum": t2v["R@1"] + t2v["R@5"] + t2v["R@10"]}


def _epoch(tower, head: RetrievalHead, data: CaptionedFeatures, config: TrainConfig, stepper: Stepper,
           groups: list[dict], result: TrainResult, stage=None) -> dict:
    """One pass over the training videos (a caption each, a random view each); the mean of each loss part."""
    trained = [m for m in (tower.model, head, stage) if m is not None]
    for module in trained:
        module.train()
    parts: list[dict] = []
    for videos, captions in sample_batches(len(data.frames), data.caption_video, config.batch_size, stepper.generator,
                                           config.caption_passes):
        text = tower.forward([data.captions[c] for c in captions.tolist()])
        views = None if stage is None else \
            torch.randint(data.stage_inputs.shape[1], (len(videos),), generator=stepper.generator)
        loss, losses = head.loss(text, *data.video_features(videos, stage, views, head.uses_patches, head.device))
        stepper.step(loss, [p for g in groups for p in g["params"]], config.grad_clip)
        result.steps += 1
        parts.append(losses)
    for module in trained:
        module.eval()
    return {k: sum(p[k] for p in parts) / len(parts) for k in parts[0]} if parts else {}


def tune_text_tower(backbone, head: RetrievalHead, data: CaptionedFeatures, config: TrainConfig,
                    output_dir: str | Path, num_frames: int, validation: CaptionedFeatures | None = None,
                    text_lr_scale: float = TEXT_LR_SCALE, patience: int = PATIENCE,
                    log: Callable[[str], None] = print, image_stage: ImageStage | None = None,
                    image_lr_scale: float = IMAGE_LR_SCALE) -> tuple[TrainResult, str]:
    """Tune a copy of the backbone's text tower (and, with `image_stage`, the last image stages on
    the data's cached stage inputs) with the head; write output_dir/text_tower.pt and
    output_dir/best.pt (the head, tied to the tuned backbone) from the best epoch; its spec."""
    from vtr_core.backbones.lite import save_text_tower, text_tower_id

    require_text_tuning(backbone)
    if image_stage is not None and (data.stage_inputs is None or (validation and validation.stage_inputs is None)):
        raise VtrError("tuning image stages needs their cached inputs (image_stage.stage_inputs)")
    tower = backbone.text_tower_copy()
    head.to(backbone.device)
    groups = joint_groups(head, tower.model, config, text_lr_scale)
    if image_stage is not None:
        image_stage.to(backbone.device)
        groups += decayed_groups(image_stage, config.lr * image_lr_scale, config.weight_decay)
    stepper = Stepper.start(groups, config, steps_per_epoch(len(data.frames), data.caption_video, config.batch_size,
                                                    config.caption_passes))
    result, best = TrainResult(), None
    started = time.perf_counter()
    for epoch in range(config.epochs):
        record = {"epoch": epoch, "lr": stepper.scheduler.get_last_lr()[0],
                  **_epoch(tower, head, data, config, stepper, groups, result, image_stage)}
        if validation is not None:
            record.update(validate_with(tower, head, validation, image_stage))
        result.history.append(record)
        log(epoch_line(epoch, record))
        score = record.get("val_rsum", float(epoch))  # without validation: the last epoch
        if score > result.best_score:
            result.best_epoch, result.best_score = epoch, score
            best = (copy.deepcopy(tower.model.state_dict()), copy.deepcopy(head.state_dict()), record,
                    None if image_stage is None else copy.deepcopy(image_stage.state_dict()))
        elif epoch - result.best_epoch >= patience:
            log(f"no better validation for {patience} epochs: stopping, best epoch {result.best_epoch}")
            break
    tower_state, head_state, record, stage_state = best
    tower.model.load_state_dict(tower_state)
    head.load_state_dict(head_state)
    image_state = None
    if image_stage is not None:
        image_stage.load_state_dict(stage_state)
        image_state = image_stage.tuned_state()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    spec = save_text_tower(tower, output_dir / "text_tower.pt", backbone, image_state)
    tuned_id = text_tower_id(output_dir / "text_tower.pt", backbone.base_id, tunes_image=image_state is not None)
    save_head(head.cpu(), output_dir / "best.pt", tuned_id, num_frames,
              extra={"epoch": result.best_epoch, "record": record, "train_config": asdict(config),
                     "text_tower": spec, "text_lr_scale": text_lr_scale,
                     "image_stages": None if image_stage is None else image_stage.stages,
                     "image_lr_scale": None if image_stage is None else image_lr_scale})
    result.seconds = time.perf_counter() - started
    return result, spec
