"""The training suite: steps/s of head training from cached features, per method."""

from __future__ import annotations

import tempfile
from typing import Callable

import torch
import torch.nn.functional as F

from vtr_core.studies.bench.common import machine


def training_suite(backbone, methods: list[str], videos: int = 256, frames: int = 12, epochs: int = 2,
                   batch_size: int = 128, log: Callable[[str], None] = print) -> dict:
    """Steps/s of head training from cached (here synthetic) features, one method at a time."""
    from vtr_core.methods import create_head
    from vtr_core.training import TrainConfig, TrainData, train_head

    generator = torch.Generator().manual_seed(0)
    words = ["man", "woman", "dog", "car", "ball", "kitchen", "road", "rides", "cooks", "throws", "runs", "red"]
    captions = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(6)) for i in range(videos)]
    text = backbone.encode_text(captions)
    dim, raw_dim = backbone.embed_dim, backbone.raw_dim
    data = TrainData(F.normalize(torch.randn(videos, frames, dim, generator=generator), dim=-1), None, text,
                     torch.arange(videos), raw=torch.randn(videos, frames, raw_dim, generator=generator) if raw_dim else None)
    result = {"videos": videos, "batch_size": batch_size, "epochs": epochs, "device": str(backbone.device),
              "machine": machine(), "methods": {}}
    for name in methods:
        log(f"training suite: {name}")
        head = create_head(name, backbone, num_frames=frames, corpus=captions, temporal_layers=1).to(backbone.device)
        with tempfile.TemporaryDirectory() as scratch:
            run = train_head(head, data, TrainConfig(epochs=epochs, batch_size=batch_size), scratch, backbone.id, frames,
                             log=lambda m: None)
        result["methods"][name] = {"steps": run.steps, "seconds": round(run.seconds, 2),
                                   "steps_per_s": round(run.steps / run.seconds, 2)}
    return result
