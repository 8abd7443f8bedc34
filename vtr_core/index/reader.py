"""Reading one generation of an index: its catalogue rows, memory-mapped feature segments.

A view is pinned to the generation it opened: a writer committing meanwhile changes nothing it
sees. Opening reads the header and counts only; the moment and video records load on first use (a
search never needs them all: it looks up the few moments it returns, `lookup`).
"""

from __future__ import annotations

import os
import shutil
from contextlib import AbstractContextManager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from vtr_core.contracts import check_backbone
from vtr_core.errors import IndexFormatError, IndexMismatchError
from vtr_core.index.catalogue import CATALOGUE, Catalogue, CommitBatch
from vtr_core.index.legacy import is_v1_index, v1_message
from vtr_core.index.records import IndexHeader, MomentRecord, VideoRecord
from vtr_core.index.segments import SEGMENTS_DIR, Segment, gather, open_segment
from vtr_core.storage import fsync_dir

if TYPE_CHECKING:
    from vtr_core.index.writer import IndexWriter

EXACT_CHUNK = 65536  # rows scored at a time by the exact `search_coarse`


class VideoIndex:
    """A read-only view of one generation of an index directory."""

    def __init__(self, directory: Path, catalogue: Catalogue, generation: int | None = None):
        self.directory = Path(directory)
        self.catalogue = catalogue
        self.header: IndexHeader = catalogue.header
        self.generation: int = catalogue.latest_generation() if generation is None else generation
        self.num_videos, self.num_moments = catalogue.counts(self.generation)
        self._segments: dict[str, Segment] = {}

    # -- opening -------------------------------------------------------------------------------
    @staticmethod
    def exists(directory: str | os.PathLike) -> bool:
        return (Path(directory) / CATALOGUE).is_file()

    @classmethod
    def open(cls, directory: str | os.PathLike, backbone_id: str | None = None,
             embed_dim: int | None = None) -> "VideoIndex":
        """Read the newest generation; a `backbone_id` (and its `embed_dim`) other than the index's is an error."""
        directory = Path(directory)
        if not directory.is_dir():
            raise IndexFormatError(f"index {directory}: no such directory")
        if not cls.exists(directory) and is_v1_index(directory):
            raise IndexMismatchError(v1_message(directory))
        index = cls(directory, Catalogue(directory))
        if backbone_id is not None or embed_dim is not None:
            check_backbone(index.header, f"index {directory}", backbone_id, embed_dim)
        return index

    @classmethod
    def writer(cls, directory: str | os.PathLike, header: IndexHeader) -> AbstractContextManager[IndexWriter]:
        """Open (or create) an index for writing under an exclusive lock (`vtr_core.index.writer`)."""
        from vtr_core.index.writer import open_writer

        return open_writer(directory, header)

    # -- records ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Moments in this generation (a row is a moment)."""
        return self.num_moments

    @cached_property
    def moments(self) -> list[MomentRecord]:
        """Every moment, in row order (loaded on first use)."""
        return self.catalogue.moments(self.generation)

    @cached_property
    def videos(self) -> list[VideoRecord]:
        """Every video record, oldest first (loaded on first use)."""
        return self.catalogue.videos(self.generation)

    @cached_property
    def _video_by_id(self) -> dict[str, VideoRecord]:
        return {v.video_id: v for v in self.videos}

    @cached_property
    def _rows_by_video(self) -> dict[str, list[int]]:
        rows: dict[str, list[int]] = {}
        for row, moment in enumerate(self.moments):
            rows.setdefault(moment.video_id, []).append(row)
        return rows

    @cached_property
    def _row_by_moment(self) -> dict[int, int]:
        return {m.moment_id: row for row, m in enumerate(self.moments)}

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._video_by_id

    def video(self, video_id: str) -> VideoRecord:
        if video_id not in self._video_by_id:
            raise KeyError(f"no video {video_id!r} in index {self.directory}")
        return self._video_by_id[video_id]

    def rows_of(self, video_id: str) -> list[int]:
        """Rows of a video's moments, in time order."""
        self.video(video_id)
        return self._rows_by_video.get(video_id, [])

    def row_of(self, video_id: str) -> int:
        """Row of a video's first moment."""
        return self.rows_of(video_id)[0]

    def row_of_moment(self, moment_id: int) -> int:
        if moment_id not in self._row_by_moment:
            raise KeyError(f"no moment {moment_id} in index {self.directory}")
        return self._row_by_moment[moment_id]

    def lookup(self, moment_ids: Iterable[int]) -> dict[int, tuple[MomentRecord, str]]:
        """(moment, absolute path of its video) by moment id, without loading every record."""
        return {i: (m, self.absolute(path)) for i, (m, path) in self.catalogue.lookup(list(moment_ids)).items()}

    def absolute(self, stored_path: str) -> str:
        """Records store paths relative to the index directory: the path as it is now."""
        return os.path.normpath(os.path.join(self.directory.resolve(), stored_path))

    def video_path(self, row: int) -> str:
        """Absolute path of the video a row's moment comes from."""
        return self.absolute(self.video(self.moments[row].video_id).path)

    # -- features ------------------------------------------------------------------------------
    @cached_property
    def segment_names(self) -> list[str]:
        """The segments this generation reads, oldest first."""
        return [name for name, _, _ in self.catalogue.segments(self.generation)]

    def segment(self, name: str) -> Segment:
        """A segment's arrays, mapped once per view."""
        if name not in self._segments:
            try:
                self._segments[name] = open_segment(self.directory / SEGMENTS_DIR / name)
            except IndexFormatError as exc:
                raise IndexFormatError(f"index {self.directory}: {exc}") from None
        return self._segments[name]

    def _empty(self, part: str) -> np.ndarray:
        h = self.header
        shape = {"coarse": (h.embed_dim,), "frames": (h.num_frames, h.embed_dim), "raw": (h.num_frames, h.raw_dim),
                 "patches": (h.num_frames, h.num_patches, h.embed_dim)}
        return np.zeros((0, *shape[part]), np.float32)

    def locations(self, rows: Iterable[int]) -> list[tuple[str, int]]:
        """(segment, row in the segment) of each row of this generation."""
        return [(self.moments[row].segment, self.moments[row].row) for row in rows]

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

    def frame_strip_jpeg(self, row: int) -> bytes:
        moment = self.moments[row]
        return self.segment(moment.segment).strip_jpeg(moment.row)

    def search_coarse(self, queries: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner-product top-k over the stored coarse vectors: (scores [Q, k], rows [Q, k]).

        A reference scan (memory: Q x EXACT_CHUNK scores at a time); search goes through a head's
        stage-1 structure (vtr_core.retrieval.search)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.header.embed_dim:
            raise IndexMismatchError(
                f"query vectors have {queries.shape[1]} dimensions, index {self.directory} has {self.header.embed_dim}"
            )
        top_k = min(top_k, len(self))
        if top_k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        scores = np.concatenate([queries @ self.coarse_vectors(range(s, min(len(self), s + EXACT_CHUNK))).T
                                 for s in range(0, len(self), EXACT_CHUNK)], axis=1)
        rows = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
        return np.take_along_axis(scores, rows, axis=1), rows

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file())

    def describe(self) -> dict:
        return {
            "directory": str(self.directory),
            "videos": self.num_videos,
            "moments": self.num_moments,
            "generation": self.generation,
            "backbone": self.header.backbone_spec,
            "backbone_id": self.header.backbone_id,
            "moment_policy": self.header.moments or f"{self.header.moment_spec} (made before moment search)",
            "frames": self.header.num_frames,
            "embed_dim": self.header.embed_dim,
            "patches_per_frame": self.header.num_patches,
            "faiss": self.header.faiss_factory,
            "segments": len(self.segment_names),
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
        (tmp / SEGMENTS_DIR).mkdir(parents=True)
        segments = self.catalogue.segments(self.generation)
        for name, _, _ in segments:
            shutil.copytree(self.directory / SEGMENTS_DIR / name, tmp / SEGMENTS_DIR / name)
        Catalogue.create(tmp, self.header)
        copy = Catalogue(tmp, writable=True)
        relative = {v.video_id: os.path.relpath(self.absolute(v.path), target.resolve()) for v in self.videos}
        copy.commit(CommitBatch(
            generation=1, new_segments=[(name, rows, None) for name, rows, _ in segments],
            videos=[VideoRecord(**{**v.__dict__, "path": relative[v.video_id]}) for v in self.videos],
            moments=self.moments))
        copy.close()
        os.rename(tmp, target)
        fsync_dir(target.parent)
        return VideoIndex.open(target)
