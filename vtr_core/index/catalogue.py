"""The catalogue: one SQLite database (WAL mode) that says what an index holds.

Tables: `meta` (format, version, header), `generations` (one row per commit), `segments` (the
feature folders, with the generation that added and the one that dropped each), `videos` (file
facts) and `moments` (the unit of retrieval: a time range of a video, where its features are).
Videos and moments carry the generation that added them and the one that removed them, so a
reader pinned to generation g sees exactly g's contents (live at g: added <= g < removed) while a
writer commits g + 1. A commit is one transaction, whose cost depends on its batch, not on the
index's size; rows removed before the previous generation are purged by the writer, which keeps
the previous generation readable, as the segment files are.

The database is opened read-only with `immutable=1` where the folder cannot be written (a bundled
index), so reading never needs write access.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import json
import os
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from vtr_core.errors import IndexFormatError, IndexMismatchError
from vtr_core.index.records import IndexHeader, MomentRecord, VideoRecord
from vtr_core.resources import bundled_dir

CATALOGUE = "catalogue.sqlite"
FORMAT = "vtr-index"
FORMAT_VERSION = 2

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE generations(generation INTEGER PRIMARY KEY, committed_at REAL NOT NULL,
                         videos INTEGER NOT NULL, moments INTEGER NOT NULL);
CREATE TABLE segments(name TEXT PRIMARY KEY, rows INTEGER NOT NULL, added INTEGER NOT NULL, dropped INTEGER,
                      merged_from TEXT);
CREATE TABLE videos(video_key INTEGER PRIMARY KEY AUTOINCREMENT, video_id TEXT NOT NULL, path TEXT NOT NULL,
                    size INTEGER NOT NULL,
                    mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL, duration_s REAL NOT NULL, fps REAL NOT NULL,
                    num_source_frames INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
                    added INTEGER NOT NULL, removed INTEGER);
CREATE INDEX videos_by_id ON videos(video_id);
CREATE INDEX videos_by_removed ON videos(removed);
CREATE TABLE moments(moment_id INTEGER PRIMARY KEY AUTOINCREMENT, video_key INTEGER NOT NULL, start_s REAL NOT NULL,
                     end_s REAL NOT NULL, frame_times_s TEXT NOT NULL, segment TEXT NOT NULL,
                     seg_row INTEGER NOT NULL, added INTEGER NOT NULL, removed INTEGER);
CREATE INDEX moments_by_video ON moments(video_key);
CREATE INDEX moments_by_segment ON moments(segment);
CREATE INDEX moments_by_added ON moments(added);
CREATE INDEX moments_by_removed ON moments(removed);
"""

VIDEO_FIELDS = [f.name for f in dataclasses.fields(VideoRecord)]
LIVE = "{t}.added <= :g AND ({t}.removed IS NULL OR {t}.removed > :g)"
MOMENT_COLUMNS = "v.video_id, m.start_s, m.end_s, m.frame_times_s, m.segment, m.seg_row, m.moment_id"


def _moment(row: tuple) -> MomentRecord:
    video_id, start, end, times, segment, seg_row, moment_id = row
    return MomentRecord(video_id, start, end, json.loads(times), segment, seg_row, moment_id)



@dataclass
class CommitBatch:
    """Everything one commit changes, applied in one transaction."""

    generation: int
    removed_videos: list[str] = field(default_factory=list)  # their records and moments end here
    touched: dict[str, int] = field(default_factory=dict)  # video id -> new mtime_ns (same content)
    videos: list[VideoRecord] = field(default_factory=list)  # new records (a replaced one is also removed)
    moments: list[MomentRecord] = field(default_factory=list)  # new moments, segment and row set
    new_segments: list[tuple[str, int, list[list] | None]] = field(default_factory=list)  # name, rows, merged from
    moved: list[tuple[int, str, int]] = field(default_factory=list)  # live moment id -> (segment, row)
    relocated: list[tuple[str, str, int]] = field(default_factory=list)  # segment -> (merged segment, row offset)
    dropped_segments: list[str] = field(default_factory=list)


class Catalogue:
    """One connection to an index's catalogue; safe to share between threads (one lock)."""

    def __init__(self, directory: Path, writable: bool = False, immutable: bool | None = None):
        """`immutable`: read without locks or WAL files, trusting nobody writes (default: for a
        shipped index or a folder this process cannot write)."""
        self.directory = Path(directory)
        self.path = self.directory / CATALOGUE
        if not self.path.is_file():
            raise IndexFormatError(f"{self.directory} is not a video index (no {CATALOGUE}); build one with `index`")
        self._lock = threading.Lock()
        try:
            if immutable is None:
                immutable = not writable and (not os.access(self.directory, os.W_OK) or self._bundled())
            if not immutable:
                self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
                self.db.execute("PRAGMA synchronous=FULL")
                if not writable:
                    self.db.execute("PRAGMA query_only=1")
            else:  # read-only media or a shipped index: no -wal/-shm files are made, nobody writes it
                self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?immutable=1", uri=True,
                                          isolation_level=None, check_same_thread=False)
            meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise IndexFormatError(f"index {self.directory}: unreadable {CATALOGUE} ({exc})") from None
        self._check_format(meta)
        self.uuid: str = meta.get("uuid", "")  # tells this index from a copy or a rebuild of it
        try:
            self.header = IndexHeader(**json.loads(meta["header"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexFormatError(f"index {self.directory}: {CATALOGUE} is damaged or from another program "
                                   f"({type(exc).__name__}: {exc})") from None

    def _bundled(self) -> bool:
        return self.directory.resolve().is_relative_to(bundled_dir().resolve())

    def _check_format(self, meta: dict) -> None:
        if meta.get("format") != FORMAT:
            raise IndexFormatError(f"{self.directory}: {CATALOGUE} is not a {FORMAT} catalogue")
        version = int(meta.get("version", 0))
        if version != FORMAT_VERSION:
            advice = ("a newer vtr_core wrote it: upgrade" if version > FORMAT_VERSION
                      else "re-index it with this program")
            raise IndexMismatchError(f"index {self.directory} has format version {version}, this program reads "
                                     f"version {FORMAT_VERSION} ({advice})")

    @staticmethod
    def create(directory: Path, header: IndexHeader) -> None:
        """A new, empty catalogue (generation 0), made under a temporary name and renamed into place."""
        tmp = Path(directory) / f".{CATALOGUE}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript("BEGIN;" + SCHEMA + "COMMIT;")
            db.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("format", FORMAT), ("version", str(FORMAT_VERSION)), ("uuid", uuid.uuid4().hex),
                ("header", json.dumps(dataclasses.asdict(header)))])
            db.execute("INSERT INTO generations VALUES (0, ?, 0, 0)", (time.time(),))
        finally:
            db.close()
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.rename(tmp, Path(directory) / CATALOGUE)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _query(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self.db

    # -- reading, pinned to a generation ----------------------------------------------------------
    def latest_generation(self) -> int:
        with self._query() as db:
            return db.execute("SELECT max(generation) FROM generations").fetchone()[0]

    def counts(self, generation: int) -> tuple[int, int]:
        """(videos, moments) live at `generation`."""
        with self._query() as db:
            row = db.execute("SELECT videos, moments FROM generations WHERE generation = ?", (generation,)).fetchone()
        if row is None:
            raise IndexFormatError(f"index {self.directory}: generation {generation} is gone (purged by a writer)")
        return row

    def moments(self, generation: int) -> list[MomentRecord]:
        """Every moment live at `generation`, in moment-id order (the generation's row order)."""
        sql = (f"SELECT {MOMENT_COLUMNS} FROM moments m JOIN videos v USING (video_key) "
               f"WHERE {LIVE.format(t='m')} ORDER BY m.moment_id")
        with self._query() as db:
            return [_moment(r) for r in db.execute(sql, {"g": generation})]

    def videos(self, generation: int) -> list[VideoRecord]:
        sql = f"SELECT {', '.join(VIDEO_FIELDS)} FROM videos v WHERE {LIVE.format(t='v')} ORDER BY video_key"
        with self._query() as db:
            return [VideoRecord(*r) for r in db.execute(sql, {"g": generation})]

    def lookup(self, moment_ids: Sequence[int]) -> dict[int, tuple[MomentRecord, str]]:
        """(moment, its video's stored path) by moment id, for the few ids a search returns."""
        ids = [int(i) for i in moment_ids]
        sql = (f"SELECT {MOMENT_COLUMNS}, v.path FROM moments m JOIN videos v USING (video_key) "
               f"WHERE m.moment_id IN ({','.join('?' * len(ids))})")
        with self._query() as db:
            rows = db.execute(sql, ids).fetchall() if ids else []
        return {r[6]: (_moment(r[:7]), r[7]) for r in rows}

    def live_ids(self, generation: int, added_after: int = -1) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(moment ids, segment of each, row of each) live at `generation` and added after
        `added_after`, in moment-id order: what a search structure is built from."""
        sql = (f"SELECT m.moment_id, m.segment, m.seg_row FROM moments m WHERE {LIVE.format(t='m')} "
               f"AND m.added > :after ORDER BY m.moment_id")
        with self._query() as db:
            rows = db.execute(sql, {"g": generation, "after": added_after}).fetchall()
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        return ids, [r[1] for r in rows], np.fromiter((r[2] for r in rows), np.int64, len(rows))

    def removed_between(self, after: int, generation: int) -> np.ndarray:
        """Ids of moments live at `after` and gone by `generation` (a structure built at `after` holds them)."""
        sql = "SELECT moment_id FROM moments WHERE added <= :a AND removed > :a AND removed <= :g"
        with self._query() as db:
            return np.asarray([r[0] for r in db.execute(sql, {"a": after, "g": generation})], np.int64)

    def segments(self, generation: int) -> list[tuple[str, int, list[list] | None]]:
        """(name, rows, merged from: [[source, rows], ...] or None) of the segments live at `generation`,
        oldest first."""
        sql = ("SELECT name, rows, merged_from FROM segments WHERE added <= :g AND (dropped IS NULL OR dropped > :g) "
               "ORDER BY added, name")
        with self._query() as db:
            return [(n, r, json.loads(m) if m else None) for n, r, m in db.execute(sql, {"g": generation})]

    def known_segments(self) -> set[str]:
        """Every segment some kept generation may read (the writer sweeps the rest)."""
        with self._query() as db:
            return {r[0] for r in db.execute("SELECT name FROM segments")}

    def current(self, video_ids: Sequence[str]) -> set[str]:
        """Which of these videos the index holds now (not removed), by an indexed lookup."""
        ids = list(video_ids)
        found: set[str] = set()
        with self._query() as db:
            for start in range(0, len(ids), 500):  # SQLite caps the variables of one statement
                part = ids[start : start + 500]
                marks = ",".join("?" * len(part))
                sql = f"SELECT video_id FROM videos WHERE +removed IS NULL AND video_id IN ({marks})"
                found.update(r[0] for r in db.execute(sql, part))
        return found

    def moments_of(self, video_ids: Sequence[str]) -> list[MomentRecord]:
        """The current (not removed) moments of these videos."""
        sql = (f"SELECT {MOMENT_COLUMNS} FROM moments m JOIN videos v USING (video_key) WHERE +m.removed IS NULL "
               f"AND v.video_id IN ({','.join('?' * len(video_ids))}) ORDER BY m.moment_id")
        with self._query() as db:
            return [_moment(r) for r in db.execute(sql, list(video_ids))]

    def live_moments_in(self, segments: Sequence[str], generation: int) -> list[MomentRecord]:
        """Moments live at `generation` whose features are in these segments."""
        marks = ",".join(f":s{i}" for i in range(len(segments)))
        sql = (f"SELECT {MOMENT_COLUMNS} FROM moments m JOIN videos v USING (video_key) WHERE {LIVE.format(t='m')} "
               f"AND m.segment IN ({marks}) ORDER BY m.moment_id")
        with self._query() as db:
            named = {f"s{i}": s for i, s in enumerate(segments)}
            return [_moment(r) for r in db.execute(sql, {"g": generation, **named})]

    def merged_sources(self) -> dict[str, list[str]]:
        """Sources of every known merged segment: head states of a source may serve its merged segment."""
        with self._query() as db:
            rows = db.execute("SELECT name, merged_from FROM segments WHERE merged_from IS NOT NULL").fetchall()
        return {name: [source for source, _ in json.loads(merged)] for name, merged in rows}

    def live_rows_by_segment(self, generation: int) -> dict[str, int]:
        sql = f"SELECT segment, count(*) FROM moments m WHERE {LIVE.format(t='m')} GROUP BY segment"
        with self._query() as db:
            return dict(db.execute(sql, {"g": generation}).fetchall())

    # -- writing ----------------------------------------------------------------------------------
    def commit(self, batch: CommitBatch) -> None:
        """Apply a batch as generation `batch.generation`, all of it or (on any failure) none."""
        g = batch.generation
        with self._query() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                self._apply(db, batch)
                videos, moments = db.execute("SELECT videos, moments FROM generations WHERE generation = ?",
                                             (g - 1,)).fetchone()
                added_moments = len(batch.moments)
                gone = db.execute("SELECT count(*) FROM moments WHERE removed = ?", (g,)).fetchone()[0]
                db.execute("INSERT INTO generations VALUES (?, ?, ?, ?)", (
                    g, time.time(), videos + len(batch.videos) - len(batch.removed_videos),
                    moments + added_moments - gone))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @staticmethod
    def _apply(db: sqlite3.Connection, batch: CommitBatch) -> None:
        g = batch.generation
        for video_id in batch.removed_videos:
            key = db.execute("SELECT video_key FROM videos WHERE video_id = ? AND +removed IS NULL",
                             (video_id,)).fetchone()[0]
            db.execute("UPDATE videos SET removed = ? WHERE video_key = ?", (g, key))
            db.execute("UPDATE moments SET removed = ? WHERE video_key = ? AND +removed IS NULL", (g, key))
        db.executemany("UPDATE videos SET mtime_ns = ? WHERE video_id = ? AND +removed IS NULL",
                       [(mtime, vid) for vid, mtime in batch.touched.items()])
        for name, rows, merged_from in batch.new_segments:
            db.execute("INSERT INTO segments VALUES (?, ?, ?, NULL, ?)",
                       (name, rows, g, json.dumps(merged_from) if merged_from else None))
        db.executemany("UPDATE segments SET dropped = ? WHERE name = ?", [(g, n) for n in batch.dropped_segments])
        db.executemany("UPDATE moments SET segment = ?, seg_row = seg_row + ? WHERE segment = ?",
                       [(target, offset, source) for source, target, offset in batch.relocated])
        db.executemany("UPDATE moments SET segment = ?, seg_row = ? WHERE moment_id = ?",
                       [(segment, row, moment_id) for moment_id, segment, row in batch.moved])
        keys = {}
        for video in batch.videos:
            values = [getattr(video, f) for f in VIDEO_FIELDS]
            keys[video.video_id] = db.execute(
                f"INSERT INTO videos ({', '.join(VIDEO_FIELDS)}, added) VALUES ({', '.join('?' * len(values))}, ?)",
                (*values, g)).lastrowid
        db.executemany(
            "INSERT INTO moments (video_key, start_s, end_s, frame_times_s, segment, seg_row, added) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(keys[m.video_id], m.start_s, m.end_s, json.dumps(m.frame_times_s), m.segment, m.row, g)
             for m in batch.moments])

    def purge(self, before: int) -> None:
        """Forget rows removed, and segments dropped, before generation `before` (no reader keeps them)."""
        with self._query() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM moments WHERE removed < ?", (before,))
            db.execute("DELETE FROM videos WHERE removed < ?", (before,))
            db.execute("DELETE FROM segments WHERE dropped < ?", (before,))
            db.execute("DELETE FROM generations WHERE generation < ?", (before - 1,))
            db.execute("COMMIT")
