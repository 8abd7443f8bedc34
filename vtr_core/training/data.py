"""Retrieval datasets: which videos, which captions, which caption is the query of which video.

Two sources:
- MSR-VTT as laid out in docs/DESIGN.md §5.3 (JSFUSION csv, 20-caption jsonl, split files);
- any folder of videos with a captions file (jsonl `{"video_id", "captions": [...]}`, or a csv/tsv
  with `video_id` and `caption`/`sentence` columns).
Splits of MSR-VTT: `1kA` (all 1,000 test videos), `train700`, `test300`, and `train`/`val`, a
fixed seeded cut of train700 into 600 + 100 videos so that model selection never sees test300.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vtr_core.errors import VtrError

VALIDATION_VIDEOS = 100
SPLIT_SEED = 0
MSRVTT_SPLITS = ("1kA", "train700", "test300", "train", "val")


@dataclass
class RetrievalDataset:
    """Videos with their captions; `queries` are the text-to-video queries (one per video)."""

    name: str
    video_ids: list[str]
    video_paths: list[Path]
    captions: list[str]  # every caption, for video-to-text and training
    caption_video: np.ndarray  # [C] index into video_ids
    queries: list[str]  # text-to-video queries
    query_video: np.ndarray  # [Q] index into video_ids

    def __len__(self) -> int:
        return len(self.video_ids)

    def captions_of(self, video: int) -> list[str]:
        return [c for c, v in zip(self.captions, self.caption_video) if v == video]


def _read_jsonl_captions(path: Path) -> dict[str, list[str]]:
    captions: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                video_id, texts = row["video_id"], row["captions"]
            except (ValueError, KeyError, TypeError):
                raise VtrError(f"{path}:{number}: expected {{\"video_id\": ..., \"captions\": [...]}}") from None
            captions.setdefault(str(video_id), []).extend(str(t) for t in texts)
    return captions


def _read_table_captions(path: Path) -> dict[str, list[str]]:
    delimiter = "\t" if path.suffix == ".tsv" else ","
    captions: dict[str, list[str]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        columns = set(reader.fieldnames or [])
        text_column = "caption" if "caption" in columns else "sentence"
        if "video_id" not in columns or text_column not in columns:
            raise VtrError(f"{path}: needs columns video_id and caption (or sentence), has {sorted(columns)}")
        for row in reader:
            captions.setdefault(row["video_id"], []).append(row[text_column])
    return captions


def read_captions(path: str | Path) -> dict[str, list[str]]:
    """video_id -> captions, from .jsonl/.json (one object per line) or .csv/.tsv."""
    path = Path(path)
    if not path.is_file():
        raise VtrError(f"{path}: no such captions file")
    return _read_jsonl_captions(path) if path.suffix in {".jsonl", ".json"} else _read_table_captions(path)


def _dataset(name: str, video_dir: Path, video_ids: list[str], captions: dict[str, list[str]],
             queries: dict[str, str] | None) -> RetrievalDataset:
    all_captions, caption_video = [], []
    for i, video_id in enumerate(video_ids):
        texts = [t for t in captions.get(video_id, []) if t.strip()]
        if not texts:
            raise VtrError(f"{name}: video {video_id} has no captions")
        all_captions.extend(texts)
        caption_video.extend([i] * len(texts))
    query_texts = [queries[v] if queries else captions[v][0] for v in video_ids]
    return RetrievalDataset(
        name=name,
        video_ids=video_ids,
        video_paths=[video_dir / f"{v}.mp4" for v in video_ids],
        captions=all_captions,
        caption_video=np.array(caption_video, dtype=np.int64),
        queries=query_texts,
        query_video=np.arange(len(video_ids), dtype=np.int64),
    )


def split_video_ids(data_dir: Path, split: str) -> list[str]:
    if split not in MSRVTT_SPLITS:
        raise VtrError(f"unknown MSR-VTT split {split!r}: use one of {', '.join(MSRVTT_SPLITS)}")
    if split == "1kA":
        with open(data_dir / "MSRVTT_JSFUSION_test.csv", encoding="utf-8", newline="") as handle:
            return [row["video_id"] for row in csv.DictReader(handle)]
    if split in ("train700", "test300"):
        return (data_dir / f"split_{split}.txt").read_text().split()
    train700 = (data_dir / "split_train700.txt").read_text().split()
    held_out = set(random.Random(SPLIT_SEED).sample(train700, VALIDATION_VIDEOS))
    return [v for v in train700 if (v in held_out) == (split == "val")]


def load_msrvtt(data_dir: str | Path, split: str) -> RetrievalDataset:
    """MSR-VTT 1k-A videos of one split: JSFUSION queries (t2v) and all 20 captions (v2t)."""
    data_dir = Path(data_dir)
    if not (data_dir / "MSRVTT_JSFUSION_test.csv").is_file():
        raise VtrError(f"{data_dir}: not an MSR-VTT folder (no MSRVTT_JSFUSION_test.csv)")
    video_ids = split_video_ids(data_dir, split)
    with open(data_dir / "MSRVTT_JSFUSION_test.csv", encoding="utf-8", newline="") as handle:
        jsfusion = {row["video_id"]: row["sentence"] for row in csv.DictReader(handle)}
    captions = _read_jsonl_captions(data_dir / "captions_1kA.jsonl")
    return _dataset(f"msrvtt-{split}", data_dir / "videos", video_ids, captions, jsfusion)


def load_folder_dataset(video_dir: str | Path, captions_file: str | Path) -> RetrievalDataset:
    """A folder of `<video_id>.<ext>` files with a captions file; the first caption is the query."""
    video_dir = Path(video_dir)
    captions = read_captions(captions_file)
    found = {p.stem: p for p in sorted(video_dir.iterdir()) if p.is_file()} if video_dir.is_dir() else {}
    video_ids = [v for v in captions if v in found]
    if not video_ids:
        raise VtrError(f"{captions_file}: no captioned video found in {video_dir}")
    dataset = _dataset(Path(video_dir).name, video_dir, video_ids, captions, None)
    dataset.video_paths = [found[v] for v in video_ids]
    return dataset


def load_dataset(data_dir: str | Path, split: str, captions_file: str | Path | None = None) -> RetrievalDataset:
    data_dir = Path(data_dir)
    if (data_dir / "MSRVTT_JSFUSION_test.csv").is_file():
        return load_msrvtt(data_dir, split)
    if captions_file is None:
        for candidate in ("captions.jsonl", "captions.csv", "captions.tsv"):
            if (data_dir / candidate).is_file():
                captions_file = data_dir / candidate
                break
    if captions_file is None:
        raise VtrError(f"{data_dir}: neither an MSR-VTT folder nor a folder with captions.jsonl")
    video_dir = data_dir / "videos" if (data_dir / "videos").is_dir() else data_dir
    return load_folder_dataset(video_dir, captions_file)
