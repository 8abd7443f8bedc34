"""Explorer records -> what a UI shows: gallery items, table rows, charts, short markdown.

Panels follow the data, never the method's name: an explanation with concepts gets concept
panels, one with gates gets a gate chart, per-frame lists in `extra` become extra bar rows.
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
from vtr_core.explorer.service import DslView, ExplainView, TextToVideo, VideoToText


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
    """(thumbnail, caption) per hit: rank, clip, score and, after a re-rank, the stage-1 rank."""
    items = []
    for hit in result.hits:
        moved = f" · stage 1: #{hit.coarse_rank}" if hit.reranked else ""
        items.append((hit.thumbnail, f"#{hit.rank} {hit.video_id} · {hit.score:.3f}{moved}"))
    return items


HIT_COLUMNS = ["rank", "clip", "score", "stage-1 rank", "stage-1 score", "re-ranked"]


def hit_rows(result: TextToVideo) -> list[list]:
    return [[h.rank, h.video_id, round(h.score, 4), h.coarse_rank, round(h.coarse_score, 4), "yes" if h.reranked else ""]
            for h in result.hits]


def timings_text(result: TextToVideo) -> str:
    t = result.timings
    stage = f"re-rank of the top {result.rerank_depth} {t.rerank_ms:.0f} ms" if result.rerank_depth else "no re-rank"
    return (f"**{result.method}** ({result.head_source.rsplit('/', 1)[-1]}): encode {t.encode_ms:.0f} ms · "
            f"search {t.search_ms:.1f} ms · {stage} · total {t.total_ms:.0f} ms")


CAPTION_COLUMNS = ["rank", "caption", "score", "written for"]


def caption_rows(result: VideoToText) -> list[list]:
    return [[h.rank, h.caption, round(h.score, 4), h.video_id] for h in result.hits]


def caption_summary(result: VideoToText) -> str:
    return (f"{result.corpus_size} captions of *{result.corpus}* ranked for **{result.video}** with "
            f"{result.method} in {1e3 * result.seconds:.0f} ms")


def _per_frame_series(view: ExplainView) -> list[tuple[str, list[float]]]:
    count = len(view.frames)
    series = []
    if view.explanation.frame_weights:
        series.append(("attention", view.explanation.frame_weights))
    for name, value in view.explanation.extra.items():
        if isinstance(value, list) and len(value) == count and all(isinstance(v, (int, float)) for v in value):
            series.append((name.replace("_", " "), value))
    return series


def frame_attention(view: ExplainView) -> Image.Image:
    """The sampled frames with the head's weight of each (and any other per-frame numbers)."""
    labels = [f"{t:.1f} s" for t in view.frame_times_s]
    series = _per_frame_series(view) or [("uniform", [1.0 / len(view.frames)] * len(view.frames))]
    return plots.frame_bars(view.frames, series, labels, title=f"Frames of {view.video_id}: weight per frame")


def best_frame(view: ExplainView) -> int:
    weights = view.explanation.frame_weights
    return int(np.argmax(weights)) if weights else 0


def patch_heat_map(view: ExplainView, frame: int | None = None) -> Image.Image | None:
    """The chosen frame (default: the most attended) with its patch weights over it."""
    if not view.patch_weights or not view.patch_grid:
        return None
    frame = best_frame(view) if frame is None else max(0, min(int(frame), len(view.frames) - 1))
    source = "the head's patch attention" if view.patch_source == "head" else \
        "backbone patch-query similarity (this method scores no patches)"
    overlay = plots.patch_overlay(view.frames[frame], np.asarray(view.patch_weights[frame]), view.patch_grid, size=256)
    plain = plots.patch_overlay(view.frames[frame], np.zeros(len(view.patch_weights[frame])), view.patch_grid,
                                size=256, alpha=0.0)
    return plots.titled(plots.hstack([plain, overlay]), f"frame {frame + 1} at {view.frame_times_s[frame]:.1f} s: {source}")


TERM_COLUMNS = ["term", "value", "weight", "weight x value"]


def term_rows(view: ExplainView) -> list[list]:
    e = view.explanation
    rows = [[name, round(value, 4), round(e.weights.get(name, 0.0), 4), round(e.weights.get(name, 0.0) * value, 4)]
            for name, value in e.terms.items()]
    return rows + [["score", "", "", round(e.score, 4)]]


def terms_chart(view: ExplainView) -> Image.Image:
    e = view.explanation
    names = [n for n in e.terms if n in e.weights]
    return plots.bar_chart([f"{n} ({e.weights[n]:.2f} x {e.terms[n]:.3f})" for n in names],
                           [e.weights[n] * e.terms[n] for n in names],
                           title=f"{e.method}: score {e.score:.4f} = sum of weighted terms")


def gates_chart(view: ExplainView) -> Image.Image | None:
    gates = view.explanation.gates
    if not gates:
        return None
    return plots.bar_chart(list(gates), list(gates.values()), title="gate weight of each stream (sums to 1)")


def _concept_list(items: list[dict]) -> str:
    if not items:
        return "(none active)"
    return "; ".join(f"**#{c['concept']}** {c['weight']:.2f} ({', '.join(c['words'][:4])})" for c in items)


def concepts_text(view: ExplainView) -> str:
    concepts = view.explanation.concepts
    if not concepts:
        return ""
    lines = ["**Sparse concepts** (concept id, activation, its most frequent words)", ""]
    for key, label in (("query", "query"), ("video", "clip"), ("shared", "shared by both")):
        if key in concepts:
            lines.append(f"- **{label}**: {_concept_list(concepts[key])}")
    for i, items in enumerate(concepts.get("frames", [])):
        time_s = view.frame_times_s[i] if i < len(view.frame_times_s) else 0.0
        lines.append(f"- frame {i + 1} ({time_s:.1f} s): {_concept_list(items)}")
    return "\n".join(lines)


def concept_map(view: ExplainView) -> Image.Image | None:
    concepts = view.explanation.concepts or {}
    grid = concepts.get("frame_concept_map")
    if not grid or not grid.get("values"):
        return None
    values = np.asarray(grid["values"], float)
    rows = [f"frame {i + 1} ({t:.1f} s)" for i, t in enumerate(view.frame_times_s[: len(values)])]
    return plots.heat_map(values, rows, grid["labels"], title="concept activation per frame", cell=26,
                          label_width=120, show_values=False)


def extra_text(view: ExplainView) -> str:
    """Other records of the explanation: tables for lists of records, a line per mapping."""
    parts = []
    for name, value in view.explanation.extra.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            keys = list(value[0])
            parts += [f"**{name.replace('_', ' ')}**", "", "| " + " | ".join(keys) + " |",
                      "|" + " --- |" * len(keys)]
            parts += ["| " + " | ".join(str(v.get(k, "")) for k in keys) + " |" for v in value]
            parts.append("")
        elif isinstance(value, dict) and value and all(isinstance(v, (int, float)) for v in value.values()):
            parts.append(f"**{name.replace('_', ' ')}**: " + ", ".join(f"{k} {v:.3f}" for k, v in value.items()))
            parts.append("")
    return "\n".join(parts)


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


def info_text(info) -> str:
    copy = "" if info.index_dir == info.source_dir else f" (a user copy of `{info.source_dir}`)"
    return "\n".join([
        (f"**{info.videos} clips** · backbone `{info.backbone}` (`{info.backbone_id}`) on **{info.device}** · "
         f"{info.frames} frames per clip · {info.embed_dim}-d · {info.patches_per_frame} patches per frame · "
         f"{info.disk_bytes / 1e6:.1f} MB on disk · generation {info.generation}"),
        "",
        f"index: `{info.index_dir}`{copy}  ",
        f"uploaded clips go to: `{info.uploads_dir}`  ",
        f"captions: `{info.captions or 'none'}`",
    ])
