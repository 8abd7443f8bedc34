"""A head's explanation -> what a UI shows, one renderer per panel type, never per method.

`render_explanation` returns one `Rendered` (an image and/or markdown) per panel kind: the score's
terms always, and frames, patches, concepts, gates and alignments as the head gave them. A front
end keeps one slot per kind, so a new method that reuses these panel types needs no new slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from vtr_core.explorer import plots
from vtr_core.explorer.records import ExplainView
from vtr_core.methods.explanation import AlignmentsPanel, ConceptsPanel, FramesPanel, GatesPanel, PatchesPanel

KINDS = ("frames", "patches", "terms", "gates", "concepts", "alignments")
TERM_COLUMNS = ["term", "value", "weight", "weight x value"]


@dataclass
class Rendered:
    """What one panel shows: a picture, some markdown, or both."""

    image: Image.Image | None = None
    text: str = ""


def video_time(seconds: float) -> str:
    """`1:23.4`: a frame's time in its video, to the tenth (frames of one moment are close)."""
    minutes, secs = divmod(max(0.0, round(float(seconds), 1)), 60)
    return f"{int(minutes)}:{secs:04.1f}"


def frames_panel(view: ExplainView) -> FramesPanel:
    """The head's frame panel, or uniform weights when it gave none."""
    count = len(view.frames)
    return view.explanation.panel(FramesPanel) or FramesPanel({"uniform": [1.0 / count] * count})


def render_frames(view: ExplainView, panel: FramesPanel) -> Rendered:
    """The moment's sampled frames, each labelled with its time in the video, with the head's
    weight of each (and any other per-frame numbers)."""
    labels = [video_time(t) for t in view.frame_times_s]
    series = [(name, values) for name, values in panel.series.items() if len(values) == len(view.frames)]
    return Rendered(plots.frame_bars(view.frames, series, labels, title=f"Frames of {view.label}: {panel.title}"))


def best_frame(view: ExplainView) -> int:
    return int(np.argmax(frames_panel(view).attention))


def render_patches(view: ExplainView, panel: PatchesPanel, frame: int | None = None) -> Rendered:
    """The chosen frame (default: the most attended) with its patch weights over it."""
    if not view.patch_grid:
        return Rendered()
    frame = best_frame(view) if frame is None else max(0, min(int(frame), len(view.frames) - 1))
    source = "the head's patch attention" if panel.source == "head" else \
        "backbone patch-query similarity (this method scores no patches)"
    weights = np.asarray(panel.weights[frame])
    overlay = plots.patch_overlay(view.frames[frame], weights, view.patch_grid, size=256)
    plain = plots.patch_overlay(view.frames[frame], np.zeros(len(weights)), view.patch_grid, size=256, alpha=0.0)
    return Rendered(plots.titled(plots.hstack([plain, overlay]),
                                 f"frame {frame + 1} at {video_time(view.frame_times_s[frame])}: {source}"))


def term_rows(view: ExplainView) -> list[list]:
    e = view.explanation
    rows = [[name, round(value, 4), round(e.weights.get(name, 0.0), 4), round(e.weights.get(name, 0.0) * value, 4)]
            for name, value in e.terms.items()]
    return rows + [["score", "", "", round(e.score, 4)]]


def render_terms(view: ExplainView) -> Rendered:
    e = view.explanation
    names = [n for n in e.terms if n in e.weights]
    return Rendered(plots.bar_chart([f"{n} ({e.weights[n]:.2f} x {e.terms[n]:.3f})" for n in names],
                                    [e.weights[n] * e.terms[n] for n in names],
                                    title=f"{e.method}: score {e.score:.4f} = sum of weighted terms"))


def render_gates(panel: GatesPanel) -> Rendered:
    """Each stream's gate, labelled with its contribution to the score (gate x stream score)."""
    labels = [f"{name} (adds {panel.contributions[name]:.3f})" if name in panel.contributions else name
              for name in panel.gates]
    return Rendered(plots.bar_chart(labels, list(panel.gates.values()), title="gate weight of each stream (sums to 1)"))


def _concept_list(items: list[dict]) -> str:
    if not items:
        return "(none active)"
    return "; ".join(f"**#{c['concept']}** {c['weight']:.2f} ({', '.join(c['words'][:4])})" for c in items)


def render_concepts(view: ExplainView, panel: ConceptsPanel) -> Rendered:
    lines = ["**Sparse concepts** (concept id, activation, its most frequent words)", ""]
    for label, items in (("query", panel.query), ("clip", panel.video), ("shared by both", panel.shared)):
        lines.append(f"- **{label}**: {_concept_list(items)}")
    for i, items in enumerate(panel.frames):
        time_s = view.frame_times_s[i] if i < len(view.frame_times_s) else 0.0
        lines.append(f"- frame {i + 1} ({video_time(time_s)}): {_concept_list(items)}")
    image = None
    if panel.frame_map.get("values"):
        values = np.asarray(panel.frame_map["values"], float)
        rows = [f"frame {i + 1} ({video_time(t)})" for i, t in enumerate(view.frame_times_s[: len(values)])]
        image = plots.heat_map(values, rows, panel.frame_map["labels"], title="concept activation per frame",
                               cell=26, label_width=120, show_values=False)
    return Rendered(image, "\n".join(lines))


def render_alignments(panel: AlignmentsPanel) -> Rendered:
    """A table of the rows, frames counted from 1 as everywhere on the page."""
    if not panel.rows:
        return Rendered(text=f"**{panel.title}**: none")
    keys = list(panel.rows[0])
    cell = lambda row, key: row[key] + 1 if key == "frame" else row.get(key, "")  # noqa: E731
    lines = [f"**{panel.title}**", "", "| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    lines += ["| " + " | ".join(str(cell(row, k)) for k in keys) + " |" for row in panel.rows]
    return Rendered(text="\n".join(lines))


def render_explanation(view: ExplainView, frame: int | None = None) -> dict[str, Rendered]:
    """kind -> what to show, for every kind the explanation has (frames and terms always)."""
    e = view.explanation
    shown = {"frames": render_frames(view, frames_panel(view)), "terms": render_terms(view)}
    for panel in e.panels:
        if panel.kind in shown:
            continue
        if isinstance(panel, PatchesPanel):
            shown["patches"] = render_patches(view, panel, frame)
        elif isinstance(panel, GatesPanel):
            shown["gates"] = render_gates(panel)
        elif isinstance(panel, ConceptsPanel):
            shown["concepts"] = render_concepts(view, panel)
        elif isinstance(panel, AlignmentsPanel):
            shown["alignments"] = render_alignments(panel)
    return shown
