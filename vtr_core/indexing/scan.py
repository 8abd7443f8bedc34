"""Which files an indexing run must decode, decided before anything is decoded.

A folder is scanned for video files; each one is then new, changed, unchanged (same size and
mtime as indexed), a symlink to a file already listed (indexed once), or refused (its real path
leaves the folders the run is confined to). With pruning, indexed videos whose files are gone
are listed for removal. Only file metadata is read here; the indexer (vtr_core.indexing.indexer)
decodes, encodes and commits what the plan lists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from vtr_core.errors import VtrError
from vtr_core.index import VideoRecord
from vtr_core.video.decode import is_video_path


def scan_videos(root: str | os.PathLike) -> list[Path]:
    """Video files under `root` (recursive, sorted), chosen by extension (`is_video_path`).

    A video named .txt is not scanned; a file named .mp4 is, whatever it holds, and one that is
    not a decodable video (empty, text, truncated, audio only, unreadable, a broken or looping
    symlink) becomes one failed line of the report. Symlinked folders are not followed: a link to
    a parent folder would walk forever.
    """
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise VtrError(f"{root}: no such folder")
    found = []
    for folder, subdirs, files in os.walk(root, followlinks=False):
        subdirs.sort()
        found.extend(Path(folder) / name for name in sorted(files) if is_video_path(name))
    return found


def resolved_path(path: Path) -> str:
    """`path` with its symlinks resolved. A symlink loop raises there (RuntimeError on Python
    3.11, OSError later) and would end the whole run; it stays as its absolute path instead, so
    the decoder reports it as one failed file."""
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):
        return os.path.abspath(path)


def choose_video_id(path: Path, resolved: str, root: Path, taken: dict[str, str]) -> str:
    """The file stem, or the relative path without suffix when another file has that stem.

    `taken` maps the ids given so far to their files' real paths; the chosen id is added to it.
    """
    for candidate in (path.stem, path.relative_to(root).with_suffix("").as_posix() if path.is_relative_to(root) else resolved):
        if taken.get(candidate, resolved) == resolved:
            taken[candidate] = resolved
            return candidate
    return resolved


@dataclass
class IndexPlan:
    """What one run does with each scanned file; `failed` and `aliases` go to the report as they are."""

    known: dict[str, VideoRecord]  # the indexed videos by their files' real paths
    resolved: dict[Path, str]  # each scanned file's real path, resolved once
    todo: list[tuple[Path, str]] = field(default_factory=list)  # (file, video id): decode and encode
    unchanged: int = 0  # same size and mtime as indexed: skipped unread
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, one-line reason)
    aliases: list[str] = field(default_factory=list)  # symlinks to a file already listed
    removed: list[str] = field(default_factory=list)  # video ids whose files are gone (prune)


def _sort_file(plan: IndexPlan, path: Path, base: Path, taken: dict[str, str],
               roots: list[Path] | None, seen: set[str]) -> None:
    """Put one scanned file where it belongs in the plan."""
    resolved = plan.resolved[path]
    if roots is not None and not any(Path(resolved).is_relative_to(r) for r in roots):
        plan.failed.append((str(path), f"{path}: links outside the folders this app may index"))
        return
    if resolved in seen:  # a symlink to a file already listed: one file, one entry
        plan.aliases.append(str(path))
        return
    seen.add(resolved)
    known = plan.known.get(resolved)
    if known is not None:
        try:
            stat = path.stat()
        except OSError as exc:
            plan.failed.append((str(path), f"{path}: {exc.strerror}"))
            return
        if stat.st_size == known.size and stat.st_mtime_ns == known.mtime_ns:
            plan.unchanged += 1
            return
    plan.todo.append((path, known.video_id if known else choose_video_id(path, resolved, base, taken)))


def _gone(plan: IndexPlan, root: Path) -> list[str]:
    """Indexed videos under `root` (a folder) whose files this scan did not find."""
    if not root.is_dir():
        return []
    on_disk = set(plan.resolved.values())
    inside = root.resolve()
    return [record.video_id for resolved, record in plan.known.items()
            if resolved not in on_disk and Path(resolved).is_relative_to(inside)]


def plan_index(root: Path, paths: Sequence[Path], indexed: Iterable[VideoRecord], index_root: Path,
               confine_to: Sequence[str | os.PathLike] | None = None, prune: bool = False,
               select: Callable[[str], bool] | None = None) -> IndexPlan:
    """Sort the files scanned under `root` against the videos already indexed (paths relative to
    `index_root`, the resolved index folder). With `confine_to`, a file whose real path (symlinks
    followed) leaves those folders is refused.

    With `select` (called with each file's path relative to the scanned folder, posix), only the
    files it accepts enter the plan: one shard of a sharded build. The others are still sorted,
    aside, so every shard chooses the same video ids and links as one run over every file would."""
    indexed = list(indexed)
    plan = IndexPlan(known={os.path.normpath(index_root / v.path): v for v in indexed},
                     resolved={path: resolved_path(path) for path in paths})
    taken = {v.video_id: os.path.normpath(index_root / v.path) for v in indexed}
    roots = [Path(r).resolve() for r in confine_to] if confine_to is not None else None
    base = root if root.is_dir() else root.parent
    seen: set[str] = set()
    aside = IndexPlan(known=plan.known, resolved=plan.resolved)  # the files other shards take
    for path in sorted(paths, key=Path.is_symlink):  # real files first: a file keeps its own name over a link's
        chosen = select is None or select(Path(os.path.relpath(path, base)).as_posix())
        _sort_file(plan if chosen else aside, path, base, taken, roots, seen)
    if prune:
        plan.removed = _gone(plan, root)
    return plan
