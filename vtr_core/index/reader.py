"""Reading one generation of an index: its records, memory-mapped feature segments, faiss file."""

from __future__ import annotations

import os
import shutil
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from vtr_core.contracts import check_backbone
from vtr_core.errors import IndexFormatError, IndexMismatchError
from vtr_core.index.manifest import (
    MANIFEST,
    faiss_module,
    read_manifest,
    write_manifest,
)
from vtr_core.index.records import IndexHeader, VideoRecord
from vtr_core.storage import fsync_dir

if TYPE_CHECKING:
    from vtr_core.index.writer import IndexWriter



@dataclass
class Segment:
    """The arrays of one immutable segment folder, memory-mapped (patches and raw are optional)."""

    coarse: np.ndarray
    frames: np.ndarray
    patches: np.ndarray | None
    directory: Path = field(default_factory=Path)
    raw: np.ndarray | None = None


def gather(locations: list[tuple[str, int]], array_of: Callable[[str], np.ndarray]) -> np.ndarray:
    """float32 [n, ...]: row `r` of segment `s`'s array for each (s, r), one fancy-index per segment."""
    by_segment: dict[str, list[int]] = {}
    for position, (segment, _) in enumerate(locations):
        by_segment.setdefault(segment, []).append(position)
    out = None
    for segment, positions in by_segment.items():
        picked = np.asarray(array_of(segment)[[locations[p][1] for p in positions]], dtype=np.float32)
        if out is None:
            out = np.empty((len(locations), *picked.shape[1:]), np.float32)
        out[positions] = picked
    return out


class VideoIndex:
    """A read-only view of one generation of an index directory."""

    def __init__(self, directory: Path, manifest: dict):
        self.directory = directory
        try:
            self.generation: int = manifest["generation"]
            self.header = IndexHeader(**manifest["header"])
            self.videos = [VideoRecord(**v) for v in manifest["videos"]]
            self.faiss_file: str = manifest["faiss"]
        except (KeyError, TypeError) as exc:  # a damaged manifest, or one from another program
            raise IndexFormatError(f"index {directory}: {MANIFEST} is damaged or from another program "
                                   f"({type(exc).__name__}: {exc})") from None
        self._row_of_id = {v.video_id: i for i, v in enumerate(self.videos)}
        self._segments: dict[str, Segment] = {}
        self._faiss = None

    # -- opening -------------------------------------------------------------------------------
    @staticmethod
    def exists(directory: str | os.PathLike) -> bool:
        return (Path(directory) / MANIFEST).is_file()

    @classmethod
    def open(cls, directory: str | os.PathLike, backbone_id: str | None = None,
             embed_dim: int | None = None) -> "VideoIndex":
        """Read the newest generation; a `backbone_id` (and its `embed_dim`) other than the index's is an error."""
        directory = Path(directory)
        index = cls(directory, read_manifest(directory))
        if backbone_id is not None or embed_dim is not None:
            check_backbone(index.header, f"index {directory}", backbone_id, embed_dim)
        return index

    @classmethod
    def writer(cls, directory: str | os.PathLike, header: IndexHeader) -> AbstractContextManager[IndexWriter]:
        """Open (or create) an index for writing under an exclusive lock (`vtr_core.index.writer`)."""
        from vtr_core.index.writer import open_writer

        return open_writer(directory, header)

    # -- reading -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.videos)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._row_of_id

    def row_of(self, video_id: str) -> int:
        if video_id not in self._row_of_id:
            raise KeyError(f"no video {video_id!r} in index {self.directory}")
        return self._row_of_id[video_id]

    @property
    def segment_names(self) -> list[str]:
        """The segments this generation reads, in order of first use."""
        return list(dict.fromkeys(v.segment for v in self.videos))

    def segment(self, name: str) -> Segment:
        """A segment's arrays, mapped once per view."""
        if name not in self._segments:
            folder = self.directory / "segments" / name
            try:
                optional = {part: folder / f"{part}.npy" for part in ("patches", "raw")}
                self._segments[name] = Segment(
                    coarse=np.load(folder / "coarse.npy", mmap_mode="r"),
                    frames=np.load(folder / "frames.npy", mmap_mode="r"),
                    patches=np.load(optional["patches"], mmap_mode="r") if optional["patches"].exists() else None,
                    raw=np.load(optional["raw"], mmap_mode="r") if optional["raw"].exists() else None,
                    directory=folder,
                )
            except (OSError, ValueError) as exc:
                raise IndexFormatError(f"index {self.directory}: segment {name} is unreadable ({exc})") from None
        return self._segments[name]

    def _empty(self, part: str) -> np.ndarray:
        h = self.header
        shape = {"coarse": (h.embed_dim,), "frames": (h.num_frames, h.embed_dim), "raw": (h.num_frames, h.raw_dim),
                 "patches": (h.num_frames, h.num_patches, h.embed_dim)}
        return np.zeros((0, *shape[part]), np.float32)

    def locations(self, rows: Iterable[int]) -> list[tuple[str, int]]:
        """(segment, row in the segment) of each row of this generation."""
        return [(self.videos[row].segment, self.videos[row].row) for row in rows]

    def _gather(self, rows: Iterable[int] | None, part: str) -> np.ndarray:
        rows = list(range(len(self)) if rows is None else rows)
        if not rows:
            return self._empty(part)

        def array_of(name: str) -> np.ndarray:
            array = getattr(self.segment(name), part)
            if array is None:
                why = "built without patch tokens" if part == "patches" else "its backbone has none"
                raise IndexFormatError(f"index {self.directory} stores no {part} ({why})")
            return array

        return gather(self.locations(rows), array_of)

    def coarse_vectors(self, rows: Iterable[int] | None = None) -> np.ndarray:
        return self._gather(rows, "coarse")

    def frame_features(self, rows: Iterable[int] | None = None) -> np.ndarray:
        return self._gather(rows, "frames")

    def patch_tokens(self, rows: Iterable[int] | None = None) -> np.ndarray:
        return self._gather(rows, "patches")

    def raw_features(self, rows: Iterable[int] | None = None) -> np.ndarray | None:
        """[n, T, R] per-frame raw features, or None when the index stores none."""
        return self._gather(rows, "raw") if self.header.raw_dim else None

    def video_path(self, row: int) -> str:
        """Absolute path of a video; records store paths relative to the index directory."""
        return os.path.normpath(os.path.join(self.directory.resolve(), self.videos[row].path))

    def frame_strip_jpeg(self, row: int) -> bytes:
        record = self.videos[row]
        return (self.directory / "segments" / record.segment / "strips" / f"{record.row}.jpg").read_bytes()

    @property
    def faiss_index(self):
        if self._faiss is None:
            path = self.directory / "faiss" / self.faiss_file
            try:
                self._faiss = faiss_module().deserialize_index(np.fromfile(path, dtype=np.uint8))
            except Exception as exc:
                raise IndexFormatError(f"index {self.directory}: cannot read {path.name} ({exc})") from None
            if self._faiss.ntotal != len(self):
                raise IndexFormatError(
                    f"index {self.directory}: faiss holds {self._faiss.ntotal} vectors, manifest {len(self)}"
                )
        return self._faiss

    def search_coarse(self, queries: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inner-product top-k over the coarse vectors: (scores [Q, k], rows [Q, k])."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.header.embed_dim:
            raise IndexMismatchError(
                f"query vectors have {queries.shape[1]} dimensions, index {self.directory} has {self.header.embed_dim}"
            )
        top_k = min(top_k, len(self))
        if top_k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        scores, rows = self.faiss_index.search(queries, top_k)
        return scores, rows

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file())

    def describe(self) -> dict:
        return {
            "directory": str(self.directory),
            "videos": len(self),
            "generation": self.generation,
            "backbone": self.header.backbone_spec,
            "backbone_id": self.header.backbone_id,
            "frames": self.header.num_frames,
            "embed_dim": self.header.embed_dim,
            "patches_per_frame": self.header.num_patches,
            "faiss": self.header.faiss_factory,
            "disk_bytes": self.disk_bytes(),
        }

    # -- copying -------------------------------------------------------------------------------
    def copy_to(self, target: str | os.PathLike) -> "VideoIndex":
        """This generation as a new index at `target`, its videos still read from where they are.

        Records keep paths relative to their index, so the copy's are rewritten for its place.
        The copy is assembled under a temporary name and renamed into place: a crash leaves no
        half-copied index at `target`. An existing `target` is an error.
        """
        target = Path(target)
        if target.exists():
            raise IndexFormatError(f"index {target}: exists already; copy into a new directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.copy-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "faiss").mkdir(parents=True)
        for name in sorted({v.segment for v in self.videos}):
            shutil.copytree(self.directory / "segments" / name, tmp / "segments" / name)
        shutil.copy2(self.directory / "faiss" / self.faiss_file, tmp / "faiss" / self.faiss_file)
        moved = [replace(v, path=os.path.relpath(self.video_path(row), target.resolve()))
                 for row, v in enumerate(self.videos)]
        write_manifest(tmp, self.generation, self.header, moved, self.faiss_file)
        os.rename(tmp, target)
        fsync_dir(target.parent)
        return VideoIndex.open(target)
