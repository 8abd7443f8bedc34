"""S3MA (Wang & Shi, EMNLP Findings 2023): a sparse concept space shared by video and text.

A bank of K concepts, each a cluster of caption words, is initialised by spherical k-means of the
words' embeddings. Any feature x is projected onto it sparsely, a_x = norm(topM(ReLU(cos(x, c_k)))),
and similarities are computed coarse (video vector) and fine (frames) in the dense space and in
the sparse space: S = (S_dc + S_df + S_sc + S_sf) / 4. An alignment loss supervises the concept
activations of a caption and its video with the concepts of the caption's words, which is how the
bank is "learned and updated" from text (docs/METHODS.md §3; the [R] choices are documented there and
in README's decisions).

Decision: words are embedded with the backbone's text tower (its output space), not its input
token-embedding table. The paper prefers the input table after CLIP fine-tuning, but the `lite`
backbone's input table does not share a space with its outputs, and with a frozen backbone an
output-space bank makes the sparse terms meaningful before any training (zero-shot).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vtr_core.backbones.base import TextFeatures
from vtr_core.methods.base import (
    HeadConfig,
    RetrievalHead,
    State,
    softmax_pool,
)
from vtr_core.methods.explanation import ConceptsPanel, Explanation, FramesPanel
from vtr_core.methods.losses import symmetric_cross_entropy

STOP_WORDS = frozenset(
    "a an the and or but if of at by for with about against between into through during before after above below "
    "to from up down in out on off over under again further then once here there when where why how all any both "
    "each few more most other some such no nor not only own same so than too very s t can will just don should now "
    "is are was were be been being have has had having do does did doing i me my myself we our ours you your he him "
    "his she her it its they them their what which who whom this that these those am as until while while itself "
    "himself herself themselves yourself ourselves there's it's isn't".split()
)
WORD_PATTERN = re.compile(r"[a-z][a-z'\-]*[a-z]|[a-z]")


def caption_words(text: str) -> list[str]:
    return [w for w in WORD_PATTERN.findall(text.lower()) if w not in STOP_WORDS and len(w) > 1]


def build_vocabulary(corpus: list[str], min_count: int = 1, max_words: int = 20000) -> list[str]:
    counts = Counter(w for text in corpus for w in caption_words(text))
    return [w for w, n in counts.most_common(max_words) if n >= min_count]


def spherical_kmeans(vectors: np.ndarray, k: int, seed: int = 0, iterations: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """(unit centroids [k, D], assignment [N]) by cosine k-means (faiss)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if k >= len(vectors):  # the "no clustering" mode: one concept per word
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), np.arange(len(vectors))
    kmeans = faiss.Kmeans(vectors.shape[1], k, niter=iterations, spherical=True, seed=seed, verbose=False,
                          min_points_per_centroid=1)
    kmeans.train(vectors)
    _, assignment = kmeans.index.search(vectors, 1)
    return kmeans.centroids / np.linalg.norm(kmeans.centroids, axis=1, keepdims=True), assignment[:, 0]


@dataclass
class S3MAConfig(HeadConfig):
    num_concepts: int = 1024  # K
    active_concepts: int = 32  # M: non-zeros kept per sparse vector
    frame_temperature: float = 0.01
    similarity_weight: float = 1.0  # alpha (L_sim)
    alignment_weight: float = 1.0  # beta (L_align)
    alignment_bias: float = 0.2  # b
    alignment_temperature: float = 0.05  # tau_a
    rerank_top_k: int = 200


class S3MA(RetrievalHead):
    name = "s3ma"
    config_class = S3MAConfig
    uses_temporal_encoder = True

    def build(self) -> None:
        self.concepts = nn.Parameter(torch.zeros(0, self.embed_dim))  # set by init_concepts / a checkpoint
        self.words: list[str] = []
        self.word_concept: list[int] = []
        self._concept_of_word: dict[str, int] = {}

    # -- the concept bank ----------------------------------------------------------------------
    @torch.no_grad()
    def init_concepts(self, word_vectors: torch.Tensor, words: list[str], seed: int = 0) -> None:
        """Cluster word embeddings [N, D] into the bank; remember each word's concept."""
        centroids, assignment = spherical_kmeans(word_vectors.float().numpy(), self.config.num_concepts, seed)
        self.concepts = nn.Parameter(torch.from_numpy(np.ascontiguousarray(centroids)).float())
        self.load_extra_state({"words": list(words), "word_concept": [int(k) for k in assignment]})

    def prepare(self, backbone: Any, corpus: list[str] | None, seed: int = 0) -> None:
        """The bank from the words of `corpus` (training captions; ImageNet's class names when none),
        embedded by the backbone's text tower."""
        if not corpus:
            from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

            corpus = list(IMAGENET_CLASSNAMES)
        words = build_vocabulary(corpus)
        vectors = torch.cat([backbone.encode_text(words[i : i + 1024]).sentence for i in range(0, len(words), 1024)])
        self.init_concepts(vectors, words, seed=seed)

    def fit_state_shapes(self, state: dict[str, torch.Tensor]) -> None:
        if isinstance(state.get("concepts"), torch.Tensor):  # the bank's size is the checkpoint's
            self.concepts = nn.Parameter(torch.zeros(state["concepts"].shape[0], self.embed_dim))

    def extra_state(self) -> dict[str, Any]:
        return {"words": self.words, "word_concept": self.word_concept}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.words, self.word_concept = list(extra["words"]), list(extra["word_concept"])
        self._concept_of_word = dict(zip(self.words, self.word_concept))

    def concept_words(self, concept: int, limit: int = 6) -> list[str]:
        """The words of a concept, most frequent first (the vocabulary is frequency-ordered)."""
        return [w for w, k in zip(self.words, self.word_concept) if k == concept][:limit]

    def concept_targets(self, texts: list[str]) -> torch.Tensor:
        """Anchors y [B, K]: 1 for every concept that some word of the caption belongs to."""
        targets = torch.zeros(len(texts), self.concepts.shape[0])
        for row, text in enumerate(texts):
            hits = [self._concept_of_word[w] for w in caption_words(text) if w in self._concept_of_word]
            targets[row, hits] = 1.0
        return targets

    def concept_scores(self, x: torch.Tensor) -> torch.Tensor:
        """U_x = cos(x, c_k) for every concept: [..., K]."""
        return F.normalize(x, dim=-1) @ F.normalize(self.concepts, dim=-1).T

    def sparse(self, x: torch.Tensor) -> torch.Tensor:
        """a_x = norm(top-M of ReLU(cos(x, c_k))), zeros elsewhere."""
        u = F.relu(self.concept_scores(x))
        m = min(self.config.active_concepts, u.shape[-1])
        top = u.topk(m, dim=-1)
        kept = torch.zeros_like(u).scatter(-1, top.indices, top.values)
        return F.normalize(kept, dim=-1)

    # -- states --------------------------------------------------------------------------------
    def video_state(self, frames: torch.Tensor, patches: torch.Tensor | None,
                    raw: torch.Tensor | None = None) -> State:
        temporal = F.normalize(self.temporal(self.adapt_frames(frames.float(), raw)), dim=-1)
        video = F.normalize(temporal.mean(-2), dim=-1)
        return {"coarse": video, "frames": temporal, "sparse": self.sparse(video), "sparse_frames": self.sparse(temporal)}

    def text_state(self, text: TextFeatures) -> State:
        sentence, _ = self.adapt_text(text)
        t = F.normalize(sentence, dim=-1)
        return {"coarse": t, "sparse": self.sparse(t)}

    def similarity_terms(self, queries: State, videos: State) -> dict[str, torch.Tensor]:
        tau = self.config.frame_temperature
        return {
            "dense_coarse": queries["coarse"] @ videos["coarse"].T,
            "dense_fine": softmax_pool(torch.einsum("qd,vtd->qvt", queries["coarse"], videos["frames"]), tau),
            "sparse_coarse": queries["sparse"] @ videos["sparse"].T,
            "sparse_fine": softmax_pool(torch.einsum("qk,vtk->qvt", queries["sparse"], videos["sparse_frames"]), tau),
        }

    def term_weights(self, queries: State) -> dict[str, float]:
        return {"dense_coarse": 0.25, "dense_fine": 0.25, "sparse_coarse": 0.25, "sparse_fine": 0.25}

    # -- training ------------------------------------------------------------------------------
    def loss_from_states(self, queries: State, videos: State, text: TextFeatures):
        c = self.config
        terms = self.similarity_terms(queries, videos)
        loss_con = symmetric_cross_entropy(self.scale * terms["dense_coarse"]) + \
            symmetric_cross_entropy(self.scale * terms["dense_fine"])
        loss_sim = symmetric_cross_entropy(self.scale * terms["sparse_coarse"]) + \
            symmetric_cross_entropy(self.scale * terms["sparse_fine"])
        anchors = self.concept_targets(text.texts).to(queries["coarse"].device)

        def align(x: torch.Tensor) -> torch.Tensor:
            logits = (self.concept_scores(x) - c.alignment_bias) / c.alignment_temperature
            return F.binary_cross_entropy_with_logits(logits, anchors)

        loss_align = align(queries["coarse"]) + align(videos["coarse"])
        loss = loss_con + c.similarity_weight * loss_sim + c.alignment_weight * loss_align
        return loss, {"loss": loss.item(), "contrastive": loss_con.item(), "similarity": loss_sim.item(),
                      "alignment": loss_align.item()}

    # -- explanation ---------------------------------------------------------------------------
    def _top_concepts(self, activation: torch.Tensor, limit: int) -> list[dict]:
        values, ids = activation.topk(min(limit, int((activation > 0).sum())))
        return [{"concept": int(k), "weight": round(float(v), 4), "words": self.concept_words(int(k))}
                for v, k in zip(values, ids)]

    @torch.no_grad()
    def explain(self, query: State, video: State, text: TextFeatures | None = None) -> Explanation:
        explanation = super().explain(query, video)
        frame_scores = video["frames"][0] @ query["coarse"][0]
        explanation.panels.append(FramesPanel(
            {"attention": torch.softmax(frame_scores / self.config.frame_temperature, -1).tolist()}))
        a_t, a_v = query["sparse"][0], video["sparse"][0]
        # the T x K heat map, restricted to the concepts that matter most in any frame
        frame_map = video["sparse_frames"][0]
        columns = frame_map.max(0).values.topk(min(24, frame_map.shape[1])).indices
        explanation.panels.append(ConceptsPanel(
            query=self._top_concepts(a_t, 8),
            video=self._top_concepts(a_v, 8),
            shared=self._top_concepts(a_t * a_v, 8),
            frames=[self._top_concepts(a_f, 3) for a_f in frame_map],
            frame_map={"concepts": [int(k) for k in columns],
                       "labels": [", ".join(self.concept_words(int(k), 3)) for k in columns],
                       "values": frame_map[:, columns].tolist()},
        ))
        return explanation
