"""What a head says about one (query, video) score: the score's terms plus a list of typed panels.

Each panel type is one kind of evidence, plain data free of any drawing: per-frame numbers,
per-patch weights, sparse concepts, stream gates, word-to-frame alignments. A head returns the
panels it has; a front end draws each type one way (vtr_core.explorer.panels), so a new method
that reuses these types needs nothing new in the app.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, TypeVar, Union


@dataclass
class FramesPanel:
    """Numbers over the T sampled frames, one series each; the first is what the head attends to."""

    kind: ClassVar[str] = "frames"

    series: dict[str, list[float]]  # name -> [T]
    title: str = "weight per frame"

    @property
    def attention(self) -> list[float]:
        return next(iter(self.series.values()))


@dataclass
class PatchesPanel:
    """Weights over each frame's P patches [T][P], summing to one per frame.

    `source` says whose they are: "head" (the method's own attention) or "backbone" (query-patch
    similarity of the features, for heads that score no patches).
    """

    kind: ClassVar[str] = "patches"

    weights: list[list[float]]
    source: str = "head"


@dataclass
class ConceptsPanel:
    """Sparse concepts (S3MA): the top concepts of the query, the clip, both, and each frame.

    Each concept is {"concept": id, "weight": activation, "words": its most frequent words};
    `frame_map` is a frames x concepts heat map over the concepts that matter most in any frame.
    """

    kind: ClassVar[str] = "concepts"

    query: list[dict]
    video: list[dict]
    shared: list[dict]
    frames: list[list[dict]]
    frame_map: dict = field(default_factory=dict)  # {"concepts": [K'], "labels": [K'], "values": [T][K']}


@dataclass
class GatesPanel:
    """A query gate over expert streams (CAMoE): each stream's weight (summing to one) and its
    contribution to the score (weight x stream score)."""

    kind: ClassVar[str] = "gates"

    gates: dict[str, float]
    contributions: dict[str, float] = field(default_factory=dict)


@dataclass
class AlignmentsPanel:
    """Words of the query matched to their best frame, one row each ({"word", "frame", "cosine", ...})."""

    kind: ClassVar[str] = "alignments"

    rows: list[dict]
    title: str = "word alignments"


Panel = Union[FramesPanel, PatchesPanel, ConceptsPanel, GatesPanel, AlignmentsPanel]
PANEL_TYPES = (FramesPanel, PatchesPanel, ConceptsPanel, GatesPanel, AlignmentsPanel)
P = TypeVar("P", FramesPanel, PatchesPanel, ConceptsPanel, GatesPanel, AlignmentsPanel)


@dataclass
class Explanation:
    """The score, its named terms with their weights (score = sum of weight x term), and the panels."""

    method: str
    score: float
    terms: dict[str, float]
    weights: dict[str, float]
    panels: list[Panel] = field(default_factory=list)

    def panel(self, kind: type[P]) -> P | None:
        """The first panel of a type, or None when the head gave none."""
        return next((p for p in self.panels if isinstance(p, kind)), None)
