"""Explorer records -> what a UI shows: gallery items, table rows, charts, short markdown.

Search results, caption rankings, the DSL matrix and the collection's summary are drawn here;
a head's explanation panels are drawn by vtr_core.explorer.explain_panels.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vtr_core.explorer import plots
from vtr_core.explorer.records import CollectionInfo, DslView, MomentSpan, TextToVideo, Timeline, VideoToText
from vtr_core.retrieval.moment_hits import time_range


class ImageFiles:
    """Images handed to a web front end as files, written once and atomically, named by content.

    Gradio saves an image output by rewriting a file named after its content hash in place, so
    two concurrent requests that produce the same image (one thumbnail in two searches) can serve
    a half-written file. Files given to it instead are copied into its cache with an atomic
    rename. Files older than `max_age_s` are deleted as new ones arrive (bounded disk).
    """

    def __init__(self, folder: str | os.PathLike, max_age_s: float = 3600.0):
        self.folder, self.max_age_s = Path(folder), max_age_s
        self._next_sweep = 0.0

    def __call__(self, image: Image.Image | None) -> str | None:
        if image is None:
            return None
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=1)
        data = buffer.getvalue()
        path = self.folder / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
        if not path.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            staging = path.with_name(f".{path.name}.{os.getpid()}.{id(buffer)}")
            staging.write_bytes(data)
            os.replace(staging, path)
        else:
            os.utime(path)
        self._sweep()
        return str(path)

    def _sweep(self) -> None:
        now = time.time()
        if now < self._next_sweep:
            return
        self._next_sweep = now + min(60.0, self.max_age_s)
        for old in self.folder.glob("*.png"):
            try:
                if now - old.stat().st_mtime > self.max_age_s:
                    old.unlink()
            except OSError:
                pass  # another thread swept it first


def gallery_items(result: TextToVideo) -> list[tuple[Image.Image, str]]:
    """(thumbnail of the range's best moment, caption) per hit: rank, clip and range (the id alone
    for a range covering its whole file), score and, after a re-rank, the stage-1 rank."""
    items = []
    for hit in result.hits:
        moved = f" · stage 1: #{hit.coarse_rank}" if hit.reranked else ""
        items.append((hit.thumbnail, f"#{hit.rank} {hit.label} · {hit.score:.3f}{moved}"))
    return items


HIT_COLUMNS = ["rank", "clip", "start (s)", "end (s)", "score", "stage-1 rank", "stage-1 score", "re-ranked"]
CLIP_COLUMN, START_COLUMN, END_COLUMN = 1, 2, 3  # where a clicked row's clip and range are read


def hit_rows(result: TextToVideo) -> list[list]:
    return [[h.rank, h.video_id, round(h.start_s, 2), round(h.end_s, 2), round(h.score, 4), h.coarse_rank,
             round(h.coarse_score, 4), "yes" if h.reranked else ""] for h in result.hits]


def moment_choices(spans: list[MomentSpan], first: tuple[str, int] | None = None) -> list[tuple[str, int]]:
    """(label, moment id) per moment, numbered (short shots can share a rounded range), after `first`."""
    return ([first] if first else []) + [(f"{i + 1}. {span.label}", span.moment_id) for i, span in enumerate(spans)]


def timeline_chart(timeline: Timeline) -> Image.Image:
    """The query's score over the video: one step per moment, the best in red."""
    points = timeline.points
    return plots.timeline([(p.start_s, p.end_s, p.score) for p in points], timeline.duration_s, timeline.best,
                          title=f"{timeline.method}: score of the query over {timeline.video_id} "
                                f"({len(points)} moment{'s' if len(points) != 1 else ''}, best "
                                f"{time_range(points[timeline.best].start_s, points[timeline.best].end_s)})")


def timings_text(result: TextToVideo) -> str:
    t = result.timings
    stage = f"re-rank of the top {result.rerank_depth} {t.rerank_ms:.0f} ms" if result.rerank_depth else "no re-rank"
    return (f"**{result.method}** ({result.head_source.rsplit('/', 1)[-1]}): encode {t.encode_ms:.0f} ms · "
            f"search {t.search_ms:.1f} ms · {stage} · total {t.total_ms:.0f} ms")


CAPTION_COLUMNS = ["rank", "caption", "score", "written for"]
TIMELINE_COLUMNS = ["moment", "start (s)", "end (s)", "best caption", "score", "next captions"]


def caption_rows(result: VideoToText) -> list[list]:
    return [[h.rank, h.caption, round(h.score, 4), h.video_id] for h in result.hits]


def caption_timeline_rows(result: VideoToText) -> list[list]:
    """One row per moment of a clip of several: its range and best captions (none for one moment)."""
    return [[i + 1, round(m.moment.start_s, 2), round(m.moment.end_s, 2), m.hits[0].caption, round(m.hits[0].score, 4),
             " / ".join(h.caption for h in m.hits[1:])] for i, m in enumerate(result.timeline)]


def caption_summary(result: VideoToText) -> str:
    moment = ""
    if result.moment is not None and not result.whole:
        moment = f" {result.moment.label}"
        if result.timeline:
            which = "as asked" if result.asked else "the moment whose best caption scores highest"
            moment += f" ({which}, of {len(result.timeline)} moments)"
    warning = f"  \n*{result.warning}*" if result.warning else ""
    return (f"{result.corpus_size} captions of *{result.corpus}* ranked for **{result.video}**{moment} with "
            f"{result.method} in {1e3 * result.seconds:.0f} ms{warning}")


def _short(text: str, limit: int = 38) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def dsl_heat_maps(view: DslView) -> tuple[Image.Image, Image.Image]:
    """Before and after heat maps; outlined: each query's own clip, else its top clip."""
    rows = [f"{i + 1}. {_short(q)}" for i, q in enumerate(view.queries)]
    images = []
    for name, matrix in (("before DSL: the head's scores (colour per row)", view.before),
                         ("after DSL, transductive (colour per row)", view.after)):
        marks = np.zeros(matrix.shape, bool)
        for q in range(matrix.shape[0]):
            marks[q, view.truth[q] if view.truth else int(matrix[q].argmax())] = True
        cell = 34 if matrix.shape[1] <= 16 else 22
        images.append(plots.heat_map(matrix, rows, view.video_ids, title=name, marks=marks, cell=cell,
                                     show_values=cell >= 30, per_row=True))
    return images[0], images[1]


CHANGE_COLUMNS = ["query", "clip", "rank before", "rank after", "change", "top before", "top after"]


def change_rows(view: DslView) -> list[list]:
    return [[c.query, c.clip, c.rank_before, c.rank_after,
             f"{c.rank_before - c.rank_after:+d}" if c.rank_before != c.rank_after else "0", c.top_before, c.top_after]
            for c in view.changes]


def info_text(info: CollectionInfo) -> str:
    copy = "" if info.index_dir == info.source_dir else f" (a user copy of `{info.source_dir}`)"
    return "\n".join([
        (f"**{info.videos} clips** ({info.moments} moments, cut by `{info.moment_policy}`) · "
         f"backbone `{info.backbone}` (`{info.backbone_id}`) on **{info.device}** · "
         f"{info.frames} frames per clip · {info.embed_dim}-d · {info.patches_per_frame} patches per frame · "
         f"{info.disk_bytes / 1e6:.1f} MB on disk · generation {info.generation}"),
        "",
        f"index: `{info.index_dir}`{copy}  ",
        f"uploaded clips go to: `{info.uploads_dir}`  ",
        f"captions: `{info.captions or 'none'}`",
    ])
