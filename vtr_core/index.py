"""The on-disk video index: a manifest, immutable feature segments, and a faiss coarse index.

Layout of an index directory:
  manifest.json               format, version, generation, backbone, dimensions, the video list
  segments/seg-<gen>-<tag>/   coarse.npy f32 [n, D], frames.npy f16 [n, T, D], raw.npy f16 [n, T, R]
                              (backbones with raw features),
                              patches.npy f16 [n, T, P, D] (optional), strips/<row>.jpg
  faiss/coarse-<gen>.faiss    coarse vectors of the manifest's videos, in manifest order
A commit writes a new segment (to a temporary name, then renamed), then the faiss file, then the
manifest (temp + fsync + rename). The manifest is the only thing that makes work visible, so a
process killed at any point leaves the previous generation whole and readable; stray files of an
unfinished commit are swept by the next writer. One writer at a time holds `.lock`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import IndexFormatError, IndexMismatchError
from .storage import (atomic_save_npy, atomic_write_bytes, atomic_write_json, fsync_dir, remove_stale_temps,
                      stale_temps, write_synced)

FORMAT = "vtr-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# A segment whose live share of rows falls below this is rewritten at the next commit.
COMPACT_BELOW = 0.5


@dataclass
class VideoRecord:
    """One indexed video: where it came from, what it is, where its features are stored."""

    video_id: str
    path: str  # relative to the index directory, so an index and its videos can move together
    size: int
    mtime_ns: int
    sha256: str
    duration_s: float
    fps: float
    num_source_frames: int
    width: int
    height: int
    frame_times_s: list[float]
    segment: str = ""
    row: int = -1


@dataclass
class IndexHeader:
    """What every vector in the index depends on; a mismatch with the reader is an error."""

    backbone_spec: str
    backbone_id: str
    embed_dim: int
    num_frames: int
    patch_grid: list[int] | None
    store_patches: bool
    faiss_factory: str = "Flat"
    raw_dim: int = 0  # per-frame raw (pre-joint-space) features stored, 0: none

    @property
    def num_patches(self) -> int:
        return self.patch_grid[0] * self.patch_grid[1] if self.patch_grid and self.store_patches else 0


@dataclass
class VideoFeatures:
    """Everything the indexer stores for one video (input to `IndexWriter.add`)."""

    record: VideoRecord
    coarse: np.ndarray  # [D] float32
    frames: np.ndarray  # [T, D]
    patches: np.ndarray | None  # [T, P, D]
    strip_jpeg: bytes = b""
    raw: np.ndarray | None = None  # [T, R]


@dataclass
class _Segment:
    coarse: np.ndarray
    frames: np.ndarray
    patches: np.ndarray | None
    directory: Path = field(default_factory=Path)
    raw: np.ndarray | None = None


def _faiss():
    import faiss

    return faiss


def build_faiss(vectors: np.ndarray, factory: str):
    """Inner-product faiss index named by a factory string ("Flat", "HNSW32", "IVF256,PQ32", ...)."""
    faiss = _faiss()
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if len(vectors) and not index.is_trained:
        index.train(np.ascontiguousarray(vectors, dtype=np.float32))
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


class VideoIndex:
    """A read-only view of one generation of an index directory."""

    def __init__(self, directory: Path, manifest: dict):
        self.directory = directory
        try:
            self.generation: int = manifest["generation"]
            self.header = IndexHeader(**manifest["header"])
            self.videos = [VideoRecord(**v) for v in manifest["videos"]]
            faiss_file = manifest["faiss"]
        except (KeyError, TypeError) as exc:  # a damaged manifest, or one from another program
            raise IndexFormatError(f"index {directory}: {MANIFEST} is damaged or from another program "
                                   f"({type(exc).__name__}: {exc})") from None
        self._row_of_id = {v.video_id: i for i, v in enumerate(self.videos)}
        self._segments: dict[str, _Segment] = {}
        self._faiss = None
        self._faiss_file = faiss_file

    # -- opening -------------------------------------------------------------------------------
    @staticmethod
    def exists(directory: str | os.PathLike) -> bool:
        return (Path(directory) / MANIFEST).is_file()

    @classmethod
    def open(cls, directory: str | os.PathLike, backbone_id: str | None = None,
             embed_dim: int | None = None) -> "VideoIndex":
        """Read the newest generation; a `backbone_id` (and its `embed_dim`) other than the index's is an error."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        index = cls(directory, manifest)
        mine = index.header
        if (backbone_id is not None and backbone_id != mine.backbone_id) or \
                (embed_dim is not None and embed_dim != mine.embed_dim):
            ours = f"{backbone_id or mine.backbone_id}" + (f" ({embed_dim}-d)" if embed_dim is not None else "")
            raise IndexMismatchError(
                f"index {directory} was built with backbone {mine.backbone_id} ({mine.embed_dim}-d), "
                f"but this run uses {ours}: search it with its own backbone or re-index"
            )
        return index

    def check_compatible(self, header: IndexHeader) -> None:
        """Refuse to mix features made differently (backbone, frames, dimensions)."""
        mine = self.header
        if mine.backbone_id != header.backbone_id:
            raise IndexMismatchError(
                f"index {self.directory} was built with backbone {mine.backbone_id} ({mine.embed_dim}-d), "
                f"this run uses {header.backbone_id} ({header.embed_dim}-d): use a new index directory"
            )
        for name in ("num_frames", "embed_dim", "store_patches", "num_patches", "raw_dim"):
            if getattr(mine, name) != getattr(header, name):
                raise IndexMismatchError(
                    f"index {self.directory} has {name}={getattr(mine, name)}, "
                    f"this run asks for {name}={getattr(header, name)}: use a new index directory"
                )

    # -- reading -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.videos)

    def row_of(self, video_id: str) -> int:
        if video_id not in self._row_of_id:
            raise KeyError(f"no video {video_id!r} in index {self.directory}")
        return self._row_of_id[video_id]

    def _segment(self, name: str) -> _Segment:
        if name not in self._segments:
            folder = self.directory / "segments" / name
            try:
                optional = {part: folder / f"{part}.npy" for part in ("patches", "raw")}
                self._segments[name] = _Segment(
                    coarse=np.load(folder / "coarse.npy", mmap_mode="r"),
                    frames=np.load(folder / "frames.npy", mmap_mode="r"),
                    patches=np.load(optional["patches"], mmap_mode="r") if optional["patches"].exists() else None,
                    raw=np.load(optional["raw"], mmap_mode="r") if optional["raw"].exists() else None,
                    directory=folder,
                )
            except (OSError, ValueError) as exc:
                raise IndexFormatError(f"index {self.directory}: segment {name} is unreadable ({exc})") from None
        return self._segments[name]

    def _gather(self, rows, part: str) -> np.ndarray:
        rows = list(rows)
        if not rows:
            shape = {"coarse": (self.header.embed_dim,), "frames": (self.header.num_frames, self.header.embed_dim),
                     "raw": (self.header.num_frames, self.header.raw_dim),
                     "patches": (self.header.num_frames, self.header.num_patches, self.header.embed_dim)}
            return np.zeros((0, *shape[part]), np.float32)
        out = []
        for row in rows:
            record = self.videos[row]
            array = getattr(self._segment(record.segment), part)
            if array is None:
                why = "built with --no-patches" if part == "patches" else "its backbone has none"
                raise IndexFormatError(f"index {self.directory} stores no {part} ({why})")
            out.append(np.asarray(array[record.row], dtype=np.float32))
        return np.stack(out)

    def coarse_vectors(self, rows=None) -> np.ndarray:
        return self._gather(range(len(self)) if rows is None else rows, "coarse")

    def frame_features(self, rows=None) -> np.ndarray:
        return self._gather(range(len(self)) if rows is None else rows, "frames")

    def patch_tokens(self, rows=None) -> np.ndarray:
        return self._gather(range(len(self)) if rows is None else rows, "patches")

    def raw_features(self, rows=None) -> np.ndarray | None:
        """[n, T, R] per-frame raw features, or None when the index stores none."""
        if not self.header.raw_dim:
            return None
        return self._gather(range(len(self)) if rows is None else rows, "raw")

    def video_path(self, row: int) -> str:
        """Absolute path of a video; records store paths relative to the index directory."""
        return os.path.normpath(os.path.join(self.directory.resolve(), self.videos[row].path))

    def frame_strip_jpeg(self, row: int) -> bytes:
        record = self.videos[row]
        return (self.directory / "segments" / record.segment / "strips" / f"{record.row}.jpg").read_bytes()

    @property
    def faiss_index(self):
        if self._faiss is None:
            path = self.directory / "faiss" / self._faiss_file
            try:
                self._faiss = _faiss().deserialize_index(np.fromfile(path, dtype=np.uint8))
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

    # -- writing -------------------------------------------------------------------------------
    @classmethod
    @contextmanager
    def writer(cls, directory: str | os.PathLike, header: IndexHeader) -> Iterator["IndexWriter"]:
        """Open (or create) an index for writing under an exclusive lock."""
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise IndexFormatError(f"index {directory}: exists and is not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        leftovers = {".lock", "faiss", "segments"} | {p.name for p in stale_temps(directory / MANIFEST)}
        if not cls.exists(directory) and any(p.name not in leftovers for p in directory.iterdir()):
            raise IndexFormatError(f"index {directory}: directory is not empty and holds no {MANIFEST}")
        with open(directory / ".lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise IndexFormatError(f"index {directory} is being written by another process") from None
            if not cls.exists(directory):
                _write_manifest(directory, 0, header, [], _write_faiss(directory, 0, np.zeros((0, header.embed_dim), np.float32), header.faiss_factory))
            index = cls.open(directory)
            index.check_compatible(header)
            writer = IndexWriter(index)
            writer.sweep()
            yield writer
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not directory.is_dir():
        raise IndexFormatError(f"index {directory}: no such directory")
    if not path.is_file():
        raise IndexFormatError(f"{directory} is not a video index (no {MANIFEST}); build one with `index`")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"index {directory}: unreadable {MANIFEST} ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise IndexFormatError(f"{directory}: {MANIFEST} is not a {FORMAT} manifest")
    version = manifest.get("version")
    if version != FORMAT_VERSION:
        advice = ("a newer vtr_core wrote it: upgrade" if isinstance(version, int) and version > FORMAT_VERSION
                  else "re-index it with this program")
        raise IndexMismatchError(
            f"index {directory} has format version {version}, this program reads version {FORMAT_VERSION} ({advice})"
        )
    return manifest


def _write_faiss(directory: Path, generation: int, vectors: np.ndarray, factory: str, base=None) -> str:
    faiss = _faiss()
    if base is None:
        index = build_faiss(vectors, factory)
    else:  # only additions since the last generation: extend it instead of rebuilding
        index = base
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    name = f"coarse-{generation:06d}.faiss"
    atomic_write_bytes(directory / "faiss" / name, faiss.serialize_index(index).tobytes())
    return name


def _write_manifest(directory: Path, generation: int, header: IndexHeader, videos: list[VideoRecord], faiss_file: str) -> None:
    atomic_write_json(
        directory / MANIFEST,
        {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "generation": generation,
            "header": dataclasses.asdict(header),
            "faiss": faiss_file,
            "videos": [dataclasses.asdict(v) for v in videos],
        },
    )


class IndexWriter:
    """Buffers additions and removals; `commit` makes them durable and visible at once."""

    def __init__(self, index: VideoIndex):
        self.index = index
        self.directory = index.directory
        self.header = index.header
        self._pending: dict[str, VideoFeatures] = {}
        self._removed: set[str] = set()
        self._touched: dict[str, int] = {}

    @property
    def videos(self) -> list[VideoRecord]:
        return self.index.videos

    def add(self, item: VideoFeatures) -> None:
        T, D = self.header.num_frames, self.header.embed_dim
        if item.frames.shape != (T, D) or item.coarse.shape != (D,):
            raise IndexMismatchError(
                f"{item.record.path}: features of shape {item.frames.shape} do not fit index ({T}, {D})"
            )
        if self.header.store_patches and (item.patches is None or item.patches.shape != (T, self.header.num_patches, D)):
            raise IndexMismatchError(f"{item.record.path}: patch tokens missing or of the wrong shape")
        if self.header.raw_dim and (item.raw is None or item.raw.shape != (T, self.header.raw_dim)):
            raise IndexMismatchError(f"{item.record.path}: raw features missing or of the wrong shape")
        self._pending[item.record.video_id] = item
        self._removed.discard(item.record.video_id)

    def remove(self, video_id: str) -> None:
        self.index.row_of(video_id)  # raises KeyError naming the index
        self._removed.add(video_id)
        self._pending.pop(video_id, None)

    def touch(self, video_id: str, mtime_ns: int) -> None:
        """Record a new mtime for a file whose content hash did not change."""
        self._touched[video_id] = mtime_ns

    @property
    def pending(self) -> int:
        """Videos added since the last commit."""
        return len(self._pending)

    @property
    def dirty(self) -> bool:
        return bool(self._pending or self._removed or self._touched)

    def _compaction_candidates(self, kept: list[VideoRecord]) -> set[str]:
        live: dict[str, int] = {}
        for record in kept:
            live[record.segment] = live.get(record.segment, 0) + 1
        sparse = set()
        for name in {v.segment for v in self.index.videos}:
            total = len(self.index._segment(name).coarse)
            if live.get(name, 0) < COMPACT_BELOW * total:
                sparse.add(name)
        return sparse

    def commit(self) -> VideoIndex:
        if not self.dirty:
            return self.index
        old = self.index
        generation = old.generation + 1
        replaced = set(self._pending) | self._removed
        kept = [
            dataclasses.replace(v, mtime_ns=self._touched.get(v.video_id, v.mtime_ns))
            for v in old.videos
            if v.video_id not in replaced
        ]
        additions = list(self._pending.values())

        # Rows of nearly empty segments move into the new segment, so removals free disk space.
        sparse = self._compaction_candidates(kept) if self._removed or self._pending.keys() & old._row_of_id.keys() else set()
        moved = [v for v in kept if v.segment in sparse]
        if moved:
            kept = [v for v in kept if v.segment not in sparse]
            additions = [self._reload(old, record) for record in moved] + additions

        new_records = self._write_segment(generation, additions) if additions else []
        videos = kept + new_records
        only_appended = len(kept) == len(old.videos)
        if only_appended and new_records:
            faiss_file = _write_faiss(self.directory, generation, np.stack([a.coarse for a in additions]),
                                      self.header.faiss_factory, base=_faiss().clone_index(old.faiss_index))
        else:
            vectors = np.concatenate([old.coarse_vectors([old.row_of(v.video_id) for v in kept]),
                                      np.stack([a.coarse for a in additions]) if additions else
                                      np.zeros((0, self.header.embed_dim), np.float32)])
            faiss_file = _write_faiss(self.directory, generation, vectors, self.header.faiss_factory)
        _write_manifest(self.directory, generation, self.header, videos, faiss_file)

        self.index = VideoIndex.open(self.directory)
        self._pending.clear()
        self._removed.clear()
        self._touched.clear()
        self.sweep()
        return self.index

    def _reload(self, old: VideoIndex, record: VideoRecord) -> VideoFeatures:
        row = old.row_of(record.video_id)
        return VideoFeatures(
            record=record,
            coarse=old.coarse_vectors([row])[0],
            frames=old.frame_features([row])[0],
            patches=old.patch_tokens([row])[0] if self.header.store_patches else None,
            strip_jpeg=old.frame_strip_jpeg(row),
            raw=old.raw_features([row])[0] if self.header.raw_dim else None,
        )

    def _write_segment(self, generation: int, items: list[VideoFeatures]) -> list[VideoRecord]:
        name = f"seg-{generation:06d}-{uuid.uuid4().hex[:6]}"
        root = self.directory / "segments"
        tmp = root / f".tmp-{name}"
        (tmp / "strips").mkdir(parents=True)
        atomic_save_npy(tmp / "coarse.npy", np.stack([i.coarse for i in items]).astype(np.float32))
        atomic_save_npy(tmp / "frames.npy", np.stack([i.frames for i in items]).astype(np.float16, copy=False))
        if self.header.store_patches:
            atomic_save_npy(tmp / "patches.npy", np.stack([i.patches for i in items]).astype(np.float16, copy=False))
        if self.header.raw_dim:
            atomic_save_npy(tmp / "raw.npy", np.stack([i.raw for i in items]).astype(np.float16, copy=False))
        for row, item in enumerate(items):
            write_synced(tmp / "strips" / f"{row}.jpg", item.strip_jpeg)
        fsync_dir(tmp / "strips")
        fsync_dir(tmp)
        os.rename(tmp, root / name)
        fsync_dir(root)
        return [dataclasses.replace(item.record, segment=name, row=row) for row, item in enumerate(items)]

    def sweep(self) -> None:
        """Delete what no manifest refers to: unfinished commits, dead segments, old faiss files,
        manifest temporaries of writers killed mid-write."""
        remove_stale_temps(self.directory / MANIFEST)
        live_segments = {v.segment for v in self.index.videos}
        segments = self.directory / "segments"
        if segments.is_dir():
            for child in segments.iterdir():
                if child.name not in live_segments:
                    shutil.rmtree(child, ignore_errors=True)
        faiss_dir = self.directory / "faiss"
        if faiss_dir.is_dir():
            # keep the previous generation too: a reader that has just read the old manifest
            # may be about to open its faiss file
            keep = {self.index._faiss_file, f"coarse-{self.index.generation - 1:06d}.faiss"}
            for child in faiss_dir.iterdir():
                if child.name not in keep:
                    child.unlink(missing_ok=True)
