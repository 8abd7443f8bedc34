"""Data-parallel training across processes: joining a torchrun job, the global-batch loss, gradients.

Multi-process (`torchrun --nproc_per_node N -m vtr_core train ...`, gloo on CPU, nccl on GPU):
every rank holds the same features, takes its shard of each global batch, gathers the shards'
states (one all_gather forward, one all_reduce backward), computes the loss over the global batch; the
gradients, averaged over ranks, then equal those of one process on the global batch.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from vtr_core.backbones.base import TextFeatures
from vtr_core.methods import RetrievalHead


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a distributed job."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> bool:
    """Join a torchrun job if this process was started by one."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return True
    return False


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
    """Every rank's rows of each state tensor, in rank order, with gradients flowing back."""
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
    """Average the head's gradients over ranks (nothing to do in one process)."""
    _, size = world()
    if size == 1:
        return
    for parameter in head.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= size
