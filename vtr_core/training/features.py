"""Stored backbone features of a dataset, computed once and reused by training and evaluation.

Videos are stored as a video index (vtr_core.index) over the dataset's video folder, so the same
incremental, crash-safe machinery serves a user's collection and a benchmark. Caption features
are cached per (backbone, caption list) in one file. Heads never touch the backbone: training a
head on a frozen backbone costs minutes on a CPU.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vtr_core.backbones import Backbone
from vtr_core.backbones.base import TextFeatures, concat_text_features
from vtr_core.errors import VtrError
from vtr_core.index import VideoIndex
from vtr_core.indexing.indexer import ProgressFn, index_folder
from vtr_core.storage import atomic_torch_save, cache_dir
from vtr_core.training.data import RetrievalDataset

log = logging.getLogger(__name__)
MAX_WORDS = 32  # word tokens kept per caption, as the papers' max_words
CAPTION_CHUNK = 2048


@dataclass
class VideoFeatureSet:
    """Backbone features of a dataset's videos, in the dataset's video order."""

    frames: torch.Tensor  # float32 [V, T, D]
    patches: torch.Tensor | None  # float16 [V, T, P, D] (large: converted per batch)
    index: VideoIndex
    rows: list[int]  # the index rows of the dataset's videos
    raw: torch.Tensor | None = None  # float16 [V, T, R] (backbones with raw features)

    def select(self, videos) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(frames, patches, raw) of some videos, as float32."""
        videos = torch.as_tensor(videos, dtype=torch.long)
        patches = self.patches[videos].float() if self.patches is not None else None
        raw = self.raw[videos].float() if self.raw is not None else None
        return self.frames[videos], patches, raw


def features_dir(backbone: Backbone, root: str | Path | None = None) -> Path:
    digest = hashlib.sha256(backbone.id.encode()).hexdigest()[:12]
    path = Path(root) if root else cache_dir() / "features"
    return path / f"{backbone.spec.split(':')[0]}-{digest}"


class FrameSide:
    """A backbone under the id its frame features depend on (`frames_id`): stored video features
    are shared by every backbone with the same image side, so a tuned text tower reuses its image
    tower's instead of decoding and encoding the videos again."""

    def __init__(self, backbone: Backbone):
        self.backbone, self.id = backbone, backbone.frames_id

    def __getattr__(self, name: str):
        return getattr(self.backbone, name)


def video_features(
    dataset: RetrievalDataset,
    backbone: Backbone,
    root: str | Path | None = None,
    num_frames: int = 12,
    with_patches: bool = True,
    progress: ProgressFn | None = None,
) -> VideoFeatureSet:
    """Index the dataset's video folder (only what is missing) and load its videos' features."""
    video_dirs = {p.parent for p in dataset.video_paths}
    if len(video_dirs) != 1:
        raise VtrError(f"{dataset.name}: videos must sit in one folder")
    video_dir = video_dirs.pop()
    backbone = FrameSide(backbone)
    index_dir = features_dir(backbone, root) / f"videos-{hashlib.sha256(str(video_dir.resolve()).encode()).hexdigest()[:8]}-t{num_frames}"
    if not VideoIndex.exists(index_dir) or len(VideoIndex.open(index_dir)) < len(dataset):
        report = index_folder(video_dir, index_dir, backbone, num_frames=num_frames, progress=progress)
        if report.failed:
            log.warning("%d videos could not be decoded: %s", len(report.failed), report.failed[:3])
    index = VideoIndex.open(index_dir, backbone_id=backbone.id)
    by_path = {index.video_path(row): row for row in range(len(index))}
    try:
        rows = [by_path[str(p.resolve())] for p in dataset.video_paths]
    except KeyError as exc:
        raise VtrError(f"{dataset.name}: video {exc} is not in the feature index {index_dir}") from None
    frames = torch.from_numpy(index.frame_features(rows))
    patches = None
    if with_patches and index.header.store_patches:
        patches = torch.from_numpy(np.stack([index.patch_tokens([r])[0].astype(np.float16) for r in rows]))
    raw = index.raw_features(rows)
    return VideoFeatureSet(frames=frames, patches=patches, index=index, rows=rows,
                           raw=torch.from_numpy(raw).half() if raw is not None else None)


def caption_features(
    texts: list[str], backbone: Backbone, root: str | Path | None = None, max_words: int = MAX_WORDS
) -> TextFeatures:
    """Sentence and word features of captions, cached on disk per caption list."""
    digest = hashlib.sha256(("\n".join(texts) + f"|{max_words}").encode()).hexdigest()[:16]
    path = features_dir(backbone, root) / f"captions-{digest}.pt"
    if path.is_file():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            return TextFeatures(**stored)
        except Exception:  # an unreadable cache is recomputed, never trusted
            log.warning("recomputing unreadable caption cache %s", path)
    parts = []
    for start in range(0, len(texts), CAPTION_CHUNK):
        part = backbone.encode_text(texts[start : start + CAPTION_CHUNK])
        parts.append(TextFeatures(part.sentence, part.word_tokens[:, :max_words].half(), part.word_mask[:, :max_words],
                                  [t[:max_words] for t in part.tokens], part.texts))
    features = concat_text_features(parts)
    atomic_torch_save(
        {"sentence": features.sentence, "word_tokens": features.word_tokens, "word_mask": features.word_mask,
         "tokens": features.tokens, "texts": features.texts},
        path,
    )
    return features
