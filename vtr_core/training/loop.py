"""Training a head on stored backbone features (frozen backbone), on one process or many.

Each step takes a batch of distinct videos, each with one of its captions drawn at random, and
minimises the head's own loss. AdamW with linear warm-up then cosine decay; weight decay only on
matrices. After every epoch the head is validated (text-to-video on held-out videos, never the
test split) and `last.pt` (everything needed to resume) and `best.pt` (the head alone, best
validation R@1+R@5+R@10) are written atomically. Several processes split each global batch
between them (vtr_core.training.distributed).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch

from vtr_core.backbones.base import TextFeatures
from vtr_core.errors import VtrError
from vtr_core.methods import RetrievalHead, load_state, save_head
from vtr_core.storage import atomic_torch_save, read_plain, remove_stale_temps
from vtr_core.training.distributed import GatheredLoss, average_gradients, world
from vtr_core.training.evaluate import evaluate_head

StepProgressFn = Callable[[int, int], None]  # (steps done, total steps)


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.2
    warmup: float = 0.1  # share of all steps
    grad_clip: float = 1.0
    seed: int = 42
    caption_passes: int = 1  # captions per video per epoch (each a round over all videos)


@dataclass
class TrainData:
    """Features of the training videos and their captions (caption_video maps captions to videos)."""

    frames: torch.Tensor  # [V, T, D]
    patches: torch.Tensor | None  # [V, T, P, D], float16 ok
    captions: TextFeatures
    caption_video: torch.Tensor  # [C]
    raw: torch.Tensor | None = None  # [V, T, R], float16 ok


@dataclass
class ValidationData:
    frames: torch.Tensor
    patches: torch.Tensor | None
    queries: TextFeatures
    query_video: torch.Tensor
    captions: TextFeatures
    caption_video: torch.Tensor
    raw: torch.Tensor | None = None


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = float("-inf")
    seconds: float = 0.0
    steps: int = 0


# ----------------------------------------------------------------- batches, optimiser, schedule
def parameter_groups(head: RetrievalHead, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on the head's matrices only."""
    decay, no_decay = [], []
    for name, parameter in head.named_parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.dim() >= 2 and name not in {"G", "A", "concepts"} else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(step: int, total: int, warmup_steps: int) -> float:
    """Learning-rate factor: linear warm-up to 1, then cosine decay to 0 at `total`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def sample_batches(num_videos: int, caption_video: torch.Tensor, batch_size: int,
                   generator: torch.Generator, passes: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of `passes` rounds; each round takes every video once, in batches of distinct
    videos, with a caption not yet drawn this epoch (a video's captions cycle when it has fewer)."""
    by_video = [torch.nonzero(caption_video == v).flatten() for v in range(num_videos)]
    drawn = [c[torch.randperm(len(c), generator=generator)] for c in by_video]
    batches = []
    for round_ in range(passes):
        order = torch.randperm(num_videos, generator=generator)
        order = order[torch.tensor([len(drawn[v]) > 0 for v in order.tolist()], dtype=torch.bool)]
        for start in range(0, len(order), batch_size):
            videos = order[start : start + batch_size]
            if len(videos) < 2:  # a contrastive batch needs negatives
                continue
            captions = torch.stack([drawn[v][round_ % len(drawn[v])] for v in videos.tolist()])
            batches.append((videos, captions))
    return batches


def steps_per_epoch(num_videos: int, caption_video: torch.Tensor, batch_size: int, passes: int = 1) -> int:
    """How many batches `sample_batches` makes of these videos (the same every epoch)."""
    return len(sample_batches(num_videos, caption_video, batch_size, torch.Generator(), passes))


@dataclass
class Stepper:
    """The optimiser, its warm-up/cosine schedule and the batch order of one run.

    `start` seeds torch and the batch order from the config, so two runs of one config take the
    same steps; last.pt holds all three, so a resumed run continues exactly.
    """

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    generator: torch.Generator
    total_steps: int

    @classmethod
    def start(cls, groups: list[dict], config: TrainConfig, per_epoch: int) -> Stepper:
        torch.manual_seed(config.seed)
        optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-6)
        total = max(1, per_epoch * config.epochs)
        warmup = max(1, int(config.warmup * total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total, warmup))
        return cls(optimizer, scheduler, torch.Generator().manual_seed(config.seed), total)

    def step(self, loss: torch.Tensor, parameters: Iterable[torch.Tensor], grad_clip: float,
             before_clip: Callable[[], None] | None = None) -> None:
        """Back-propagate `loss`, clip the gradients' norm, step the optimiser and the schedule."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if before_clip is not None:
            before_clip()
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        self.optimizer.step()
        self.scheduler.step()


def epoch_line(epoch: int, record: dict) -> str:
    """The log line of one epoch: its float entries (loss parts, lr, validation R-sum)."""
    return f"epoch {epoch}: " + " ".join(f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float))


# ------------------------------------------------------------------------ checkpoints, resume
@dataclass
class _Checkpoints:
    """A run's files: last.pt (everything to resume) and best.pt (the head, best score so far)."""

    output_dir: Path
    backbone_id: str
    num_frames: int
    config: TrainConfig

    @property
    def last(self) -> Path:
        return self.output_dir / "last.pt"

    def remove_stale_temps(self) -> None:
        """A run killed while saving leaves its temporary file; without this they pile up."""
        remove_stale_temps(self.last)
        remove_stale_temps(self.output_dir / "best.pt")

    def resume(self, head: RetrievalHead, stepper: Stepper, result: TrainResult) -> int:
        """Restore head, optimiser, schedule, batch order and history from last.pt; the next epoch."""
        last = self.last
        state = read_plain(last, "resume file")  # plain tensors only: a pickle that runs code is refused
        if not isinstance(state, dict) or state.get("method") != head.name:
            held = state.get("method") if isinstance(state, dict) else None
            raise VtrError(f"resume file {last} holds a {held} run, not {head.name}: use another output folder",
                           setting="output")
        load_state(head, state["head"], f"resume file {last}")
        stepper.optimizer.load_state_dict(state["optimizer"])
        stepper.scheduler.load_state_dict(state["scheduler"])
        stepper.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        result.history, result.best_epoch, result.best_score = state["history"], state["best_epoch"], state["best_score"]
        result.steps = state["steps"]
        return state["epoch"] + 1

    def save(self, head: RetrievalHead, stepper: Stepper, result: TrainResult, epoch: int, record: dict) -> None:
        """best.pt when the epoch scores best so far (validation R-sum, else lowest loss); last.pt always."""
        score = record.get("val_rsum", -record.get("loss", 0.0))
        if score > result.best_score:
            result.best_epoch, result.best_score = epoch, score
            save_head(head, self.output_dir / "best.pt", self.backbone_id, self.num_frames,
                      extra={"epoch": epoch, "train_config": asdict(self.config), "record": record})
        atomic_torch_save({
            "method": head.name, "epoch": epoch, "head": head.state_dict(), "optimizer": stepper.optimizer.state_dict(),
            "scheduler": stepper.scheduler.state_dict(), "generator": stepper.generator.get_state(),
            "torch_rng": torch.get_rng_state(), "history": result.history, "best_epoch": result.best_epoch,
            "best_score": result.best_score, "steps": result.steps,
        }, self.last)


# ------------------------------------------------------------------------------ epochs, validation
def validate(head: RetrievalHead, data: ValidationData) -> dict:
    """Text-to-video and video-to-text metrics on held-out videos, and the R@1+R@5+R@10 selection score."""
    result = evaluate_head(head, data.frames, data.patches, data.queries, data.query_video, data.captions,
                           data.caption_video, rerank_top_k=head.eval_rerank_top_k, raw=data.raw)
    t2v = result.plain["t2v"]
    return {"val_t2v": t2v, "val_v2t": result.plain["v2t"], "val_rsum": t2v["R@1"] + t2v["R@5"] + t2v["R@10"]}


def _batch_on(device: torch.device, data: TrainData, videos: torch.Tensor, captions: torch.Tensor,
              ) -> tuple[TextFeatures, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """A batch's features, moved to the head: cached features stay in host memory between batches."""
    frames = data.frames[videos].to(device).float()
    patches = data.patches[videos].to(device).float() if data.patches is not None else None
    raw = data.raw[videos].to(device).float() if data.raw is not None else None
    return data.captions.select(captions).to(device), frames, patches, raw


def _train_epoch(head: RetrievalHead, data: TrainData, config: TrainConfig, stepper: Stepper, result: TrainResult,
                 progress: StepProgressFn | None) -> list[dict]:
    """One pass over the training videos, this rank's shard of each global batch; the steps' loss parts."""
    rank, size = world()
    shard = config.batch_size // size
    loss_fn = GatheredLoss(head)
    head.train()
    losses = []
    for videos, captions in sample_batches(len(data.frames), data.caption_video, config.batch_size, stepper.generator,
                                           config.caption_passes):
        local = slice(rank * shard, (rank + 1) * shard) if size > 1 else slice(None)
        loss, parts = loss_fn(*_batch_on(head.device, data, videos[local], captions[local]))
        stepper.step(loss, head.parameters(), config.grad_clip, before_clip=lambda: average_gradients(head))
        result.steps += 1
        losses.append(parts)
        if progress:
            progress(result.steps, stepper.total_steps)
    return losses


def train_head(
    head: RetrievalHead,
    data: TrainData,
    config: TrainConfig,
    output_dir: str | Path,
    backbone_id: str,
    num_frames: int,
    validation: ValidationData | None = None,
    resume: bool = False,
    log: Callable[[str], None] = print,
    progress: StepProgressFn | None = None,
) -> TrainResult:
    """Train in place; returns the history. Resumes from output_dir/last.pt when asked."""
    rank, size = world()
    if config.batch_size % size:
        raise VtrError(f"batch size {config.batch_size} does not split over {size} processes")
    files = _Checkpoints(Path(output_dir), backbone_id, num_frames, config)
    stepper = Stepper.start(parameter_groups(head, config.weight_decay), config,
                            steps_per_epoch(len(data.frames), data.caption_video, config.batch_size,
                                                    config.caption_passes))
    result, start_epoch = TrainResult(), 0
    if rank == 0:
        files.remove_stale_temps()
    if resume and files.last.is_file():
        start_epoch = files.resume(head, stepper, result)
        log(f"resumed from {files.last} at epoch {start_epoch}")

    started = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        losses = _train_epoch(head, data, config, stepper, result, progress)
        record = {"epoch": epoch, "lr": stepper.scheduler.get_last_lr()[0],
                  **{k: sum(p[k] for p in losses) / max(1, len(losses)) for k in (losses[0] if losses else {})}}
        if validation is not None:
            record.update(validate(head, validation))
        result.history.append(record)
        if rank == 0:
            files.save(head, stepper, result, epoch, record)
        log(epoch_line(epoch, record))
    result.seconds = time.perf_counter() - started
    head.eval()
    return result
