"""The moments of a clip that video-to-text ranks captions for, with the head's states of each.

A collection clip's moments are the index's (their states come from the head's store); a file
uploaded now is cut by the index's own moment policy (`IndexHeader.moment_spec`), so a long
upload gets the same moments the collection's videos have, decoded a chunk at a time and
encoded as they come (memory bounded by a chunk, not by the file's length).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from vtr_core.backbones import Backbone
from vtr_core.errors import VideoError
from vtr_core.explorer.collection import CollectionService
from vtr_core.explorer.records import MomentSpan, covers_whole
from vtr_core.indexing.encoding import encode_clips
from vtr_core.methods import RetrievalHead, State, concat_states
from vtr_core.retrieval.search import Searcher
from vtr_core.video.moments import MomentPolicy
from vtr_core.video.stream import read_moments

KEPT_FRAME_SIDE = 256  # an uploaded moment's frames are kept this small (a long file has many)


@dataclass
class ClipMoments:
    """A clip's moments in time order, the head's states of each (one row per moment), and where
    their frames come from."""

    label: str  # the collection id or the uploaded file's name
    spans: list[MomentSpan]
    states: State
    duration_s: float
    frames: list[list[Image.Image]] = field(default_factory=list, repr=False)  # uploads: each moment's
    rows: list[int] = field(default_factory=list)  # collection clips: each moment's index row
    warning: str = ""  # one line, when only part of an uploaded file decoded

    def whole(self, position: int) -> bool:
        span = self.spans[position]
        return covers_whole(span.start_s, span.end_s, self.duration_s)

    def frames_of(self, position: int, collection: CollectionService) -> list[Image.Image]:
        if self.rows:
            return collection.frames(collection.index, self.rows[position])
        return self.frames[position]


def collection_moments(collection: CollectionService, searcher: Searcher, video_id: str) -> ClipMoments:
    """A collection clip's moments, with the head's stored states."""
    index = searcher.index
    duration = collection.video(index, video_id).duration_s
    rows = index.rows_of(video_id)
    moments = [index.moments[r] for r in rows]
    states = searcher.candidate_states([m.moment_id for m in moments])
    return ClipMoments(video_id, [MomentSpan(m.moment_id, m.start_s, m.end_s) for m in moments], states, duration,
                       rows=rows)


def _small(frame) -> Image.Image:
    image = Image.fromarray(frame)
    image.thumbnail((KEPT_FRAME_SIDE, KEPT_FRAME_SIDE))
    return image


@torch.no_grad()
def upload_moments(collection: CollectionService, backbone: Backbone, head: RetrievalHead, path: Path,
                   device: torch.device | str) -> ClipMoments:
    """A file's moments by the index's moment policy, encoded now (a chunk of moments at a time)."""
    header = collection.index.header
    stream = read_moments(path, MomentPolicy.parse(header.moment_spec), header.num_frames)
    spans, parts, frames = [], [], []
    for chunk in stream.chunks():
        if not chunk:
            continue
        encoded = encode_clips(backbone, [m.frames for m in chunk])
        count, steps = len(chunk), header.num_frames

        def batch(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.reshape(count, steps, *tensor.shape[1:]).float().to(device)

        patches = batch(encoded.patches) if header.store_patches else None
        parts.append(head.video_state(batch(encoded.frame), patches, batch(encoded.raw)))
        spans += [MomentSpan(-1, float(m.start_s), float(m.end_s)) for m in chunk]
        frames += [[_small(f) for f in m.frames] for m in chunk]
    if not spans:
        raise VideoError(f"{path.name}: no frames could be decoded")
    duration = float(stream.info.duration_s) if stream.info is not None else spans[-1].end_s
    return ClipMoments(path.name, spans, concat_states(parts), duration, frames=frames, warning=stream.warning or "")
