"""The collection behind the explorer: one index kept current, its clips' frames, its captions,
and every write to it (indexing a folder, adding an uploaded clip).

Writes never touch a read-only or bundled index (precomputed/): the first write copies it
(`VideoIndex.copy_to`) to a user collection under the work directory (default
`~/.cache/vtr_core/explorer/`, `$VTR_CACHE_DIR`) and later sessions open that copy, until the
bundled index changes. Uploaded clips are copied into the collection's `uploads/` folder (for a
writable index: `INDEX-uploads/` next to it), never into assets/. Folders a browser asks to index
are confined to the video roots the operator gave. Nothing here knows about Gradio.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from vtr_core.backbones import Backbone
from vtr_core.errors import VideoError, VtrError
from vtr_core.explorer.corpus import CaptionCorpus, find_collection_captions, load_corpus
from vtr_core.explorer.records import CollectionInfo
from vtr_core.index import VideoIndex, VideoRecord
from vtr_core.indexing import IndexReport, index_folder, scan_videos
from vtr_core.resources import bundled_dir
from vtr_core.storage import atomic_write_json, cache_dir, file_sha256
from vtr_core.video import is_video_path, read_video, split_strip

MAX_UPLOAD_BYTES = 500 * 1024 * 1024  # a clip uploaded from a browser (the app's upload limit)
MAX_THUMBNAILS = 4096  # cached in memory (about 40 KB each)
FALLBACK_QUERIES = ["a person walks down the street", "a dog runs on the grass", "a car drives on a road"]

ProgressFn = Callable[[int, int, str], None]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "clip"


class CollectionService:
    """One index (re-read when another process commits), its frames and captions, and its writes."""

    def __init__(self, source_dir: str | os.PathLike, backbone: Backbone, device: str = "cpu",
                 captions: str | os.PathLike | None = None, workdir: str | os.PathLike | None = None,
                 video_roots: Sequence[str | os.PathLike] = (), max_upload_bytes: int = MAX_UPLOAD_BYTES):
        self.source_dir = Path(source_dir).resolve()
        self.backbone, self.device = backbone, str(device)
        self.read_only = (self.source_dir.is_relative_to(bundled_dir().resolve())
                          or not os.access(self.source_dir, os.W_OK))
        root = Path(workdir) if workdir else cache_dir() / "explorer"
        if self.read_only:
            digest = hashlib.sha256(str(self.source_dir).encode()).hexdigest()[:8]
            self.user_dir = root / f"{self.source_dir.name}-{digest}"
            self.uploads_dir = self.user_dir / "uploads"
        else:
            self.user_dir = self.source_dir
            self.uploads_dir = self.source_dir.parent / f"{self.source_dir.name}-uploads"
        self._lock = threading.RLock()  # the index view, thumbnails, the corpus
        self._write_lock = threading.Lock()  # one indexing job at a time in this process
        self._thumbs: dict[tuple, Image.Image] = {}
        self._index_dir = self._existing_copy() or self.source_dir
        self._index = self._open()
        self._generation = self._index.generation
        self.captions_path = Path(captions) if captions else find_collection_captions(
            self.source_dir, [self._index.video_path(r) for r in range(len(self._index))])
        self._corpus: CaptionCorpus | None = None
        self.max_upload_bytes = max_upload_bytes
        # folders a browser may ask to index: the ones given, plus those already holding the clips
        self.video_roots = sorted({str(Path(r).expanduser().resolve()) for r in video_roots} | set(self.media_roots()))

    # -- the index, kept current -----------------------------------------------------------------
    def _open(self) -> VideoIndex:
        return VideoIndex.open(self._index_dir, backbone_id=self.backbone.id, embed_dim=self.backbone.embed_dim)

    @property
    def index(self) -> VideoIndex:
        """The newest committed generation (re-read when a writer commits, e.g. the CLI's)."""
        if self._index.catalogue.latest_generation() != self._generation:
            self.reload()
        return self._index

    def reload(self) -> None:
        with self._lock:
            self._index = self._open()
            self._generation = self._index.generation

    def row(self, index: VideoIndex, video_id: str) -> int:
        try:
            return index.row_of(video_id)
        except KeyError:
            raise VtrError(f"no clip {video_id!r} in the collection") from None

    def video(self, index: VideoIndex, video_id: str) -> VideoRecord:
        """A clip's record, or a one-line error naming it."""
        try:
            return index.video(video_id)
        except KeyError:
            raise VtrError(f"no clip {video_id!r} in the collection") from None

    def video_ids(self) -> list[str]:
        return [v.video_id for v in self.index.videos]

    def frames(self, index: VideoIndex, row: int) -> list[Image.Image]:
        """The sampled frames of a clip, from its stored frame strip."""
        try:
            strip = Image.open(io.BytesIO(index.frame_strip_jpeg(row))).convert("RGB")
        except OSError:
            return [Image.new("RGB", (128, 96), (200, 200, 200))] * index.header.num_frames
        return split_strip(strip, index.header.num_frames)

    def thumbnail(self, index: VideoIndex, row: int) -> Image.Image:
        """The middle sampled frame of a moment (cached)."""
        moment = index.moments[row]
        key = (str(index.directory), moment.segment, moment.row)
        with self._lock:
            if key not in self._thumbs:
                if len(self._thumbs) > MAX_THUMBNAILS:
                    self._thumbs.clear()
                frames = self.frames(index, row)
                self._thumbs[key] = frames[len(frames) // 2]
            return self._thumbs[key]

    # -- captions --------------------------------------------------------------------------------
    def corpus(self) -> CaptionCorpus:
        """The collection's own captions (what video-to-text ranks by default)."""
        if self.captions_path is None:
            raise VtrError("this collection has no captions file: upload a .txt or .jsonl corpus")
        with self._lock:
            if self._corpus is None:
                self._corpus = load_corpus(self.captions_path)
            return self._corpus

    def example_queries(self, count: int = 6) -> list[str]:
        """A caption of every few clips, spread over the collection."""
        try:
            corpus = self.corpus()
        except VtrError:
            return FALLBACK_QUERIES[:count]
        seen, examples = set(), []
        for caption, video_id in zip(corpus.captions, corpus.video_ids):
            if video_id not in seen:
                seen.add(video_id)
                examples.append(caption)
        step = max(1, len(examples) // count)
        return examples[::step][:count]

    # -- writes ------------------------------------------------------------------------------------
    def _existing_copy(self) -> Path | None:
        """A user copy of a read-only index made by an earlier session, if it is still current."""
        copy = self.user_dir / "index"
        if not self.read_only or not VideoIndex.exists(copy):
            return None
        try:
            marker = json.loads((self.user_dir / "source.json").read_text())
        except (OSError, ValueError):
            return None
        if marker.get("source") != self._source_identity():
            return None  # the bundled index was rebuilt since: start again from it
        return copy

    def _source_identity(self) -> str:
        """The bundled index's identity and generation: it changes when that index is rebuilt."""
        source = VideoIndex.open(self.source_dir)
        return f"{source.catalogue.uuid}/{source.generation}"

    def _writable_index(self) -> Path:
        """Where writes go: the index itself, or (read-only source) a copy made on first write."""
        if not self.read_only or self._index_dir != self.source_dir:
            return self._index_dir
        copy = self.user_dir / "index"
        shutil.rmtree(copy, ignore_errors=True)  # a copy of an older bundled index
        self._index.copy_to(copy)
        atomic_write_json(self.user_dir / "source.json", {"path": str(self.source_dir),
                                                          "source": self._source_identity()})
        self._index_dir = copy
        self.reload()
        return copy

    def _run_indexer(self, target: str | os.PathLike, progress: ProgressFn | None,
                     confine_to: Sequence[str] | None = None) -> IndexReport:
        with self._write_lock:
            directory = self._writable_index()
            header = self._index.header
            report = index_folder(target, directory, self.backbone, num_frames=header.num_frames,
                                   store_patches=header.store_patches, faiss_factory=header.faiss_factory,
                                   # threads: spawned processes would each re-import the app (gradio)
                                   decode_processes=False, confine_to=confine_to, progress=progress)
            self.reload()
            return report

    def index_folder(self, folder: str | os.PathLike, progress: ProgressFn | None = None) -> IndexReport:
        """Add every new or changed video under a folder (on this machine) to the collection."""
        folder = self.allowed_folder(folder)
        if not scan_videos(folder):
            raise VtrError(f"{folder}: no video files in it")
        return self._run_indexer(folder, progress, confine_to=self.video_roots)

    def allowed_folder(self, folder: str | os.PathLike) -> Path:
        """The folder, resolved (symlinks and `..` followed), if it lies under an allowed root.

        A browser must not make the server read, index or later serve files the operator did not
        offer: folders are confined to `video_roots` (the video roots given, plus the folders that
        already hold the collection's clips).
        """
        if not str(folder or "").strip():
            raise VtrError("no folder given: type the path of a folder of videos on the server")
        asked = Path(str(folder).strip()).expanduser()
        resolved = asked.resolve()
        if not any(resolved.is_relative_to(root) for root in self.video_roots):
            raise VtrError(f"{asked}: outside the folders this app may index ({', '.join(self.video_roots)}); "
                           "allow another video root to index it", setting="video_root")
        if not resolved.is_dir():
            raise VtrError(f"{asked}: no such folder on the server")
        return resolved

    def check_upload(self, path: str | os.PathLike, name: str | None = None) -> Path:
        """An uploaded clip within the size limit and with a video extension, or a one-line error."""
        path, name = Path(path), name or Path(path).name
        if not is_video_path(name):
            raise VideoError(f"{name}: not a video file (use .mp4, .webm, .mov, .mkv, ...)")
        try:
            size = path.stat().st_size
        except OSError:
            raise VideoError(f"{name}: the upload is gone (no such file)") from None
        if size > self.max_upload_bytes:
            raise VideoError(f"{name}: {size / 2**20:.3g} MB is over the upload limit of "
                             f"{self.max_upload_bytes / 2**20:.3g} MB")
        return path

    def add_clip(self, path: str | os.PathLike, name: str | None = None,
                 progress: ProgressFn | None = None) -> tuple[str, IndexReport]:
        """Copy an uploaded clip into the collection's uploads folder and index it: its id."""
        path = self.check_upload(path, name)
        read_video(path, self.index.header.num_frames)  # a clear error before anything is copied
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        stem, suffix = _slug(Path(name or path.name).stem), Path(name or path.name).suffix.lower()
        digest = file_sha256(path)
        target = self.uploads_dir / f"{stem}{suffix}"
        number = 1
        while target.exists() and file_sha256(target) != digest:
            number += 1
            target = self.uploads_dir / f"{stem}-{number}{suffix}"
        if not target.exists():
            shutil.copyfile(path, target)
        report = self._run_indexer(target, progress)
        if report.failed:
            raise VideoError(report.failed[0][1])
        index = self._index
        row = next(r for r in range(len(index)) if index.video_path(r) == str(target.resolve()))
        return index.moments[row].video_id, report

    # -- what it holds -------------------------------------------------------------------------
    def info(self) -> CollectionInfo:
        index = self.index
        info = index.describe()
        return CollectionInfo(
            index_dir=str(index.directory), source_dir=str(self.source_dir), uploads_dir=str(self.uploads_dir),
            read_only_source=self.read_only, videos=index.num_videos, generation=index.generation,
            backbone=info["backbone"], backbone_id=info["backbone_id"], device=self.device,
            frames=info["frames"], embed_dim=info["embed_dim"], patches_per_frame=info["patches_per_frame"],
            disk_bytes=info["disk_bytes"], captions=str(self.captions_path or ""),
            moments=index.num_moments, moment_policy=index.header.moment_spec,
        )

    def media_roots(self) -> list[str]:
        """Folders holding the collection's clips (what a web front end must be allowed to serve)."""
        index = self.index
        folders = {str(Path(index.video_path(r)).parent) for r in range(len(index))}
        folders |= {str(self.uploads_dir)}
        return sorted(f for f in folders if not any(f != o and f.startswith(o + os.sep) for o in folders))
