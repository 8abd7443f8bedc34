"""Caption corpora for video-to-text: the collection's captions file, or one a user uploads.

Accepted files: `.txt` (one caption per line) and `.jsonl`, whose rows are `{"caption": ...}`,
`{"text": ...}` or `{"video_id": ..., "captions": [...]}` (the collection format, MSR-VTT's
captions_1kA.jsonl). Anything else is a one-line `VtrError` naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from vtr_core.errors import VtrError

MAX_CAPTIONS = 50_000
MAX_CAPTION_CHARS = 1_000
MAX_CORPUS_BYTES = 20 * 1024 * 1024


@dataclass
class CaptionCorpus:
    """Captions to rank, each with the video it describes ("" when unknown)."""

    name: str
    captions: list[str]
    video_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.video_ids:
            self.video_ids = [""] * len(self.captions)

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def key(self) -> str:
        """Content hash: caches of encoded captions are keyed by it."""
        return hashlib.sha256("\n".join(self.captions).encode()).hexdigest()[:16]

    def captions_of(self, video_id: str) -> list[str]:
        return [c for c, v in zip(self.captions, self.video_ids) if v == video_id]


def _row_captions(row, where: str) -> tuple[list[str], str]:
    if isinstance(row, str):
        return [row], ""
    if not isinstance(row, dict):
        raise VtrError(f"{where}: expected a JSON object with \"caption\", \"text\" or \"captions\"")
    video_id = str(row.get("video_id", ""))
    for key in ("caption", "text", "sentence"):
        if isinstance(row.get(key), str):
            return [row[key]], video_id
    if isinstance(row.get("captions"), list) and all(isinstance(c, str) for c in row["captions"]):
        return list(row["captions"]), video_id
    raise VtrError(f"{where}: expected a JSON object with \"caption\", \"text\" or \"captions\"")


def load_corpus(path: str | os.PathLike, name: str | None = None) -> CaptionCorpus:
    """Read a .txt or .jsonl caption file, or raise a one-line `VtrError`."""
    path = Path(path)
    label = name or path.name
    if not path.is_file():
        raise VtrError(f"caption file {label}: no such file")
    if path.suffix.lower() not in {".txt", ".jsonl"}:
        raise VtrError(f"caption file {label}: use a .txt file (one caption per line) or a .jsonl file")
    if path.stat().st_size > MAX_CORPUS_BYTES:
        raise VtrError(f"caption file {label}: larger than {MAX_CORPUS_BYTES >> 20} MB")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise VtrError(f"caption file {label}: not UTF-8 text") from None
    captions, video_ids = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"caption file {label}, line {number}"
        if path.suffix.lower() == ".jsonl":
            try:
                row = json.loads(line)
            except ValueError:
                raise VtrError(f"{where}: not valid JSON") from None
            texts, video_id = _row_captions(row, where)
        else:
            texts, video_id = [line], ""
        for text in texts:
            text = " ".join(text.split())
            if not text:
                continue
            if len(text) > MAX_CAPTION_CHARS:
                raise VtrError(f"{where}: a caption longer than {MAX_CAPTION_CHARS} characters")
            captions.append(text)
            video_ids.append(video_id)
    if not captions:
        raise VtrError(f"caption file {label}: no captions in it")
    if len(captions) > MAX_CAPTIONS:
        raise VtrError(f"caption file {label}: {len(captions)} captions, at most {MAX_CAPTIONS}")
    return CaptionCorpus(label, captions, video_ids)


def find_collection_captions(index_dir: Path, video_paths: list[str]) -> Path | None:
    """A captions file that belongs with an index: in it, beside it, or in/above its videos' folder."""
    folders = [index_dir, index_dir.parent]
    if video_paths:
        common = Path(os.path.commonpath(video_paths))
        common = common if common.is_dir() else common.parent
        folders += [common, common.parent]
    for folder in folders:
        for name in ("captions.jsonl", "captions_1kA.jsonl", "captions.txt"):
            if (folder / name).is_file():
                return folder / name
    return None
