"""Run by tests/test_training.py under torchrun: one distributed training step, gradients saved."""

import sys

import torch

from vtr_core.backbones.base import TextFeatures
from vtr_core.methods.eercf import EERCF
from vtr_core.methods.s3ma import S3MA
from vtr_core.training import (
    GatheredLoss,
    average_gradients,
    init_distributed,
    world,
)


def build(name: str):
    torch.manual_seed(0)
    if name == "eercf":
        return EERCF(8, EERCF.config_class(num_frames=3, temporal_layers=1))
    head = S3MA(8, S3MA.config_class(temporal_layers=1, active_concepts=3))
    head.init_concepts(torch.randn(6, 8), ["dog", "cat", "car", "road", "man", "ball"])
    return head


def batch():
    generator = torch.Generator().manual_seed(1)
    texts = ["a dog and a cat", "a car on the road", "a man with a ball", "a dog runs"] * 2
    text = TextFeatures(torch.randn(8, 8, generator=generator), torch.randn(8, 4, 8, generator=generator),
                        torch.ones(8, 4, dtype=torch.bool), [["w"] * 4] * 8, texts)
    return text, torch.randn(8, 3, 8, generator=generator), torch.randn(8, 3, 2, 8, generator=generator)


def gradients(head):
    return {name: p.grad.clone() for name, p in head.named_parameters() if p.grad is not None}


if __name__ == "__main__":
    init_distributed()
    rank, size = world()
    text, frames, patches = batch()
    shard = slice(rank * 8 // size, (rank + 1) * 8 // size)
    result = {}
    for name in ("eercf", "s3ma"):
        head = build(name).eval()  # eval: no dropout, so ranks and the reference agree exactly
        loss, _ = GatheredLoss(head)(text.select(range(8)[shard]), frames[shard], patches[shard])
        loss.backward()
        average_gradients(head)
        result[name] = {"loss": loss.item(), "grads": gradients(head)}
    if rank == 0:
        torch.save(result, sys.argv[1])
