"""States in bulk: a head's per-video and per-query states for many rows, selected and joined.

A state is a dict of tensors with one row per video or query (see `methods.base`); these helpers
compute them in batches on the head's device, so callers (search, evaluation, training, the
explorer) never loop over rows themselves.
"""

from __future__ import annotations

import torch

from vtr_core.backbones.base import TextFeatures
from vtr_core.methods.base import RetrievalHead, State

STATE_BATCH = 128


def select_rows(state: State, rows) -> State:
    """The states of some videos or queries (rows: indices along dim 0)."""
    rows = torch.as_tensor(rows, dtype=torch.long, device=next(iter(state.values())).device)
    return {key: value[rows] for key, value in state.items()}


def concat_states(states: list[State]) -> State:
    return {key: torch.cat([s[key] for s in states]) for key in states[0]}


@torch.no_grad()
def video_states(head: RetrievalHead, frames: torch.Tensor, patches: torch.Tensor | None,
                 batch: int = STATE_BATCH, raw: torch.Tensor | None = None) -> State:
    parts, device = [], head.device  # features move to the head a batch at a time
    for start in range(0, frames.shape[0], batch):
        stop = start + batch
        parts.append(head.video_state(frames[start:stop].to(device).float(),
                                      patches[start:stop].to(device).float() if patches is not None else None,
                                      raw[start:stop].to(device).float() if raw is not None else None))
    return concat_states(parts)


@torch.no_grad()
def text_states(head: RetrievalHead, text: TextFeatures, batch: int = 1024) -> State:
    return concat_states([head.text_state(text.select(range(s, min(s + batch, len(text)))).to(head.device))
                          for s in range(0, len(text), batch)])
