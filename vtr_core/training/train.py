"""Training a head on stored backbone features (frozen backbone), on one process or many.

Each step takes a batch of distinct videos, each with one of its captions drawn at random, and
minimises the head's own loss. AdamW with linear warm-up then cosine decay; weight decay only on
matrices. After every epoch the head is validated (text-to-video on held-out videos, never the
test split) and `last.pt` (everything needed to resume) and `best.pt` (the head alone, best
validation R@1+R@5+R@10) are written atomically.

Multi-process (`torchrun --nproc_per_node N -m vtr_core train ...`, gloo on CPU, nccl on GPU):
every rank holds the same features, takes its shard of each global batch, gathers the shards'
states (one all_gather forward, one all_reduce backward), computes the loss over the global batch; the
gradients, averaged over ranks, then equal those of one process on the global batch.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from vtr_core.backbones.base import TextFeatures
from vtr_core.errors import VtrError
from vtr_core.methods import RetrievalHead, load_state, save_head
from vtr_core.storage import atomic_torch_save, read_plain, remove_stale_temps
from vtr_core.training.evaluate import evaluate_head


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.2
    warmup: float = 0.1  # share of all steps
    grad_clip: float = 1.0
    seed: int = 42


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


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> bool:
    """Join a torchrun job if this process was started by one."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return True
    return False


def parameter_groups(head: RetrievalHead, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, parameter in head.named_parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.dim() >= 2 and name not in {"G", "A", "concepts"} else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(step: int, total: int, warmup_steps: int) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def sample_batches(num_videos: int, caption_video: torch.Tensor, batch_size: int,
                   generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch: every video once, in batches of distinct videos, each with a random caption."""
    by_video = [torch.nonzero(caption_video == v).flatten() for v in range(num_videos)]
    order = torch.randperm(num_videos, generator=generator)
    batches = []
    for start in range(0, num_videos, batch_size):
        videos = order[start : start + batch_size]
        if len(videos) < 2:  # a contrastive batch needs negatives
            continue
        picks = torch.randint(0, 1 << 30, (len(videos),), generator=generator)
        captions = torch.stack([by_video[v][p % len(by_video[v])] for v, p in zip(videos.tolist(), picks.tolist())])
        batches.append((videos, captions))
    return batches


class _GatherStates(torch.autograd.Function):
    """All ranks' state tensors in one all_gather; gradients return in one all_reduce.

    One flat buffer per direction means every rank issues exactly one collective, so there is no
    order in which ranks could pair different tensors' gradients with each other.
    """

    @staticmethod
    def forward(ctx, *tensors: torch.Tensor):
        rank, size = world()
        ctx.rank, ctx.size, ctx.shapes = rank, size, [t.shape for t in tensors]
        flat = torch.cat([t.reshape(-1) for t in tensors])
        parts = [torch.empty_like(flat) for _ in range(size)]
        dist.all_gather(parts, flat.contiguous())
        sizes = [t.numel() for t in tensors]
        per_rank = [torch.split(part, sizes) for part in parts]
        return tuple(torch.cat([per_rank[r][i].view(shape) for r in range(size)])
                     for i, shape in enumerate(ctx.shapes))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        rows = [shape[0] for shape in ctx.shapes]
        chunks = []
        for r in range(ctx.size):
            for grad, shape, n in zip(grads, ctx.shapes, rows):
                part = grad[r * n : (r + 1) * n] if grad is not None else torch.zeros(shape)
                chunks.append(part.reshape(-1))
        buffer = torch.cat(chunks)
        dist.all_reduce(buffer)  # every rank took the same global loss: sum their gradients
        local = buffer.view(ctx.size, -1)[ctx.rank]
        return tuple(piece.view(shape) for piece, shape in zip(torch.split(local, [s.numel() for s in ctx.shapes]), ctx.shapes))


def gather_states(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    keys = list(state)
    dtypes = [state[k].dtype for k in keys]
    gathered = _GatherStates.apply(*[state[k].float() for k in keys])
    return {k: g.to(d) for k, g, d in zip(keys, gathered, dtypes)}


class GatheredLoss:
    """A head's loss over the global batch when several processes train together.

    Each rank computes the states of its own shard; the states are gathered (with gradients) and
    the loss is taken over all of them, so every rank's gradient flows back through its own shard
    only; averaging gradients over ranks then gives exactly the one-process gradient.
    """

    def __init__(self, head: RetrievalHead):
        self.head = head

    def __call__(self, text: TextFeatures, frames: torch.Tensor, patches: torch.Tensor | None,
                 raw: torch.Tensor | None = None):
        _, size = world()
        if size == 1:
            return self.head.loss(text, frames, patches, raw)
        queries = gather_states(self.head.text_state(text))
        videos = gather_states(self.head.video_state(frames, patches, raw))
        texts: list[list[str]] = [[] for _ in range(size)]
        dist.all_gather_object(texts, text.texts)
        labels = TextFeatures(text.sentence, text.word_tokens, text.word_mask, [], [t for part in texts for t in part])
        return self.head.loss_from_states(queries, videos, labels)


def average_gradients(head: RetrievalHead) -> None:
    _, size = world()
    if size == 1:
        return
    for parameter in head.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= size


def validate(head: RetrievalHead, data: ValidationData) -> dict:
    result = evaluate_head(head, data.frames, data.patches, data.queries, data.query_video, data.captions,
                           data.caption_video, rerank_top_k=head.eval_rerank_top_k, raw=data.raw)
    t2v = result.plain["t2v"]
    return {"val_t2v": t2v, "val_v2t": result.plain["v2t"], "val_rsum": t2v["R@1"] + t2v["R@5"] + t2v["R@10"]}


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
    progress: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train in place; returns the history. Resumes from output_dir/last.pt when asked."""
    rank, size = world()
    output_dir = Path(output_dir)
    if config.batch_size % size:
        raise VtrError(f"batch size {config.batch_size} does not split over {size} processes")
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(parameter_groups(head, config.weight_decay), lr=config.lr,
                                  betas=(0.9, 0.98), eps=1e-6)
    steps_per_epoch = len(sample_batches(len(data.frames), data.caption_video, config.batch_size, torch.Generator()))
    total_steps = max(1, steps_per_epoch * config.epochs)
    warmup_steps = max(1, int(config.warmup * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, total_steps, warmup_steps))
    result, start_epoch = TrainResult(), 0

    last = output_dir / "last.pt"
    if rank == 0:  # a run killed while saving leaves its temporary file; without this they pile up
        remove_stale_temps(last)
        remove_stale_temps(output_dir / "best.pt")
    if resume and last.is_file():
        state = read_plain(last, "resume file")  # plain tensors only: a pickle that runs code is refused
        if not isinstance(state, dict) or state.get("method") != head.name:
            held = state.get("method") if isinstance(state, dict) else None
            raise VtrError(f"resume file {last} holds a {held} run, not {head.name}: use another output folder",
                           setting="output")
        load_state(head, state["head"], f"resume file {last}")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        result.history, result.best_epoch, result.best_score = state["history"], state["best_epoch"], state["best_score"]
        result.steps = state["steps"]
        start_epoch = state["epoch"] + 1
        log(f"resumed from {last} at epoch {start_epoch}")

    loss_fn = GatheredLoss(head)
    started = time.perf_counter()
    shard = config.batch_size // size
    for epoch in range(start_epoch, config.epochs):
        head.train()
        losses = []
        for videos, captions in sample_batches(len(data.frames), data.caption_video, config.batch_size, generator):
            local = slice(rank * shard, (rank + 1) * shard) if size > 1 else slice(None)
            videos, captions = videos[local], captions[local]
            device = head.device  # cached features stay in host memory; each batch moves to the head
            frames = data.frames[videos].to(device).float()
            patches = data.patches[videos].to(device).float() if data.patches is not None else None
            raw = data.raw[videos].to(device).float() if data.raw is not None else None
            loss, parts = loss_fn(data.captions.select(captions).to(device), frames, patches, raw)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(head)
            torch.nn.utils.clip_grad_norm_(head.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            result.steps += 1
            losses.append(parts)
            if progress:
                progress(result.steps, total_steps)
        record = {"epoch": epoch, "lr": scheduler.get_last_lr()[0],
                  **{k: sum(p[k] for p in losses) / max(1, len(losses)) for k in (losses[0] if losses else {})}}
        if validation is not None:
            record.update(validate(head, validation))
        result.history.append(record)
        score = record.get("val_rsum", -record.get("loss", 0.0))
        if rank == 0:
            if score > result.best_score:
                result.best_epoch, result.best_score = epoch, score
                save_head(head, output_dir / "best.pt", backbone_id, num_frames,
                          extra={"epoch": epoch, "train_config": asdict(config), "record": record})
            atomic_torch_save({
                "method": head.name, "epoch": epoch, "head": head.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                "history": result.history, "best_epoch": result.best_epoch, "best_score": result.best_score,
                "steps": result.steps,
            }, last)
        summary = " ".join(f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float))
        log(f"epoch {epoch}: {summary}")
    result.seconds = time.perf_counter() - started
    head.eval()
    return result


# ------------------------------------------------------------------------- end-to-end fine-tuning
BACKBONE_LR_SCALE = 1e-3  # the papers: CLIP at 1e-7 while new parameters learn at 1e-4


@dataclass
class EndToEndData:
    """Decoded training videos as centre crops (uint8, so 700 videos fit in memory) and captions."""

    pixels: torch.Tensor  # uint8 [V, T, 3, S, S]
    captions: list[str]
    caption_video: torch.Tensor  # [C]


def prepare_pixels(paths: list, backbone, num_frames: int, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    from vtr_core.backbones.base import frames_to_tensor
    from vtr_core.video.decode import read_video

    crops = []
    for i, path in enumerate(paths):
        frames = read_video(path, num_frames).frames
        unit = frames_to_tensor(frames, backbone.image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), torch.device("cpu"))
        crops.append((unit * 255).round().to(torch.uint8))
        if progress:
            progress(i + 1, len(paths))
    return torch.stack(crops)


def fine_tune(
    backbone,
    head: RetrievalHead,
    data: EndToEndData,
    config: TrainConfig,
    output_dir: str | Path,
    num_frames: int,
    backbone_lr_scale: float = BACKBONE_LR_SCALE,
    log: Callable[[str], None] = print,
) -> tuple[TrainResult, str]:
    """Train the backbone (a clip backbone) and the head together on decoded frames.

    Returns the history and the spec of the fine-tuned backbone (its weights are saved as
    output_dir/backbone.pt); the head checkpoint (output_dir/best.pt, the last epoch) is tied to
    that backbone's id, so indexes must be rebuilt with it.
    """
    from vtr_core.backbones.clip import weights_fingerprint

    if not hasattr(backbone, "forward_pixels"):
        raise VtrError(f"end-to-end fine-tuning needs a clip backbone, not {backbone.spec}")
    output_dir = Path(output_dir)
    device = backbone.device
    model = backbone.trainable()
    head.to(device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    groups = parameter_groups(head, config.weight_decay)
    backbone_decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    backbone_rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups += [{"params": backbone_decay, "weight_decay": config.weight_decay, "lr": config.lr * backbone_lr_scale},
               {"params": backbone_rest, "weight_decay": 0.0, "lr": config.lr * backbone_lr_scale}]
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-6)
    num_videos = data.pixels.shape[0]
    per_epoch = len(sample_batches(num_videos, data.caption_video, config.batch_size, torch.Generator()))
    total_steps = per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, total_steps, max(1, int(config.warmup * total_steps))))
    mean = torch.tensor(backbone.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std, device=device).view(1, 3, 1, 1)
    result = TrainResult()
    started = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        head.train()
        losses = []
        for videos, captions in sample_batches(num_videos, data.caption_video, config.batch_size, generator):
            pixels = data.pixels[videos].to(device).flatten(0, 1).float().div_(255)
            features = backbone.forward_pixels((pixels - mean) / std)
            frames = features.frame.view(len(videos), num_frames, -1)
            patches = features.patches.view(len(videos), num_frames, -1, frames.shape[-1]) \
                if features.patches is not None else None
            text = backbone.forward_text([data.captions[c] for c in captions.tolist()])
            loss, parts = head.loss(text, frames, patches)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], config.grad_clip)
            optimizer.step()
            scheduler.step()
            result.steps += 1
            losses.append(parts)
        record = {"epoch": epoch, **{k: sum(p[k] for p in losses) / len(losses) for k in losses[0]}}
        result.history.append(record)
        log(f"epoch {epoch}: " + " ".join(f"{k}={v:.4f}" for k, v in record.items() if isinstance(v, float)))
    model.eval()
    head.eval()
    spec = backbone.save_weights(output_dir / "backbone.pt")
    backbone_id = "clip:" + weights_fingerprint(backbone.model_name, str(output_dir / "backbone.pt"))
    save_head(head.cpu(), output_dir / "best.pt", backbone_id, num_frames,
              extra={"epoch": config.epochs - 1, "train_config": asdict(config), "end_to_end": True, "backbone": spec})
    result.best_epoch, result.seconds = config.epochs - 1, time.perf_counter() - started
    return result, spec
