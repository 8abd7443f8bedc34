"""Turning head states into score matrices: all pairs, or EERCF's two-stage coarse-to-fine.

Two-stage: stage 1 scores every video with the coarse inner product; stage 2 re-scores only each
query's top-k candidates with the head's full similarity, adding RERANK_OFFSET so candidates stay
above every non-candidate (which keeps its coarse score). Fine scoring never touches the other
V - k videos.
"""

from __future__ import annotations

import torch

from vtr_core.methods import RetrievalHead, State, select_rows

RERANK_OFFSET = 100.0
QUERY_CHUNK = 64
RERANK_BLOCK_PAIRS = 1 << 16  # (query, video) pairs scored per call when re-ranking a batch on a GPU


@torch.no_grad()
def all_pair_scores(head: RetrievalHead, queries: State, videos: State, query_chunk: int = QUERY_CHUNK) -> torch.Tensor:
    """The head's full similarity for every (query, video) pair: [Q, V]."""
    count = next(iter(queries.values())).shape[0]
    parts = [head.similarity(select_rows(queries, range(s, min(s + query_chunk, count))), videos)
             for s in range(0, count, query_chunk)]
    return torch.cat(parts)


@torch.no_grad()
def rerank_candidates(head: RetrievalHead, queries: State, videos: State, candidates: torch.Tensor) -> torch.Tensor:
    """Full similarity of each query with its own candidate videos only: [Q, k].

    One query (online search) scores its k candidates in one call. On a GPU, blocks of queries
    are scored against the union of their candidates. On the CPU, several queries are grouped
    by candidate video: each video's fine features (patch tokens, 0.9 MB for lite) are read once
    for all the queries that picked it, instead of being copied for every query (45 MB at k=50).
    """
    count, k = candidates.shape
    device = next(iter(videos.values())).device
    if count == 1:
        return head.similarity(queries, select_rows(videos, candidates[0]))
    if device.type == "cuda":
        return _rerank_by_query_blocks(head, queries, videos, candidates.to(device))
    unique_videos = torch.unique(candidates)
    flat_videos = candidates.reshape(-1)
    flat_queries = torch.arange(count).repeat_interleave(k)
    scores = torch.empty(count * k)
    order = torch.argsort(flat_videos, stable=True)
    boundaries = torch.searchsorted(flat_videos[order], unique_videos, right=True)
    start = 0
    for video, stop in zip(unique_videos.tolist(), boundaries.tolist()):
        positions = order[start:stop]
        pair_scores = head.similarity(select_rows(queries, flat_queries[positions]), select_rows(videos, [video]))
        scores[positions] = pair_scores[:, 0]
        start = stop
    return scores.view(count, k)


def _rerank_by_query_blocks(head: RetrievalHead, queries: State, videos: State, candidates: torch.Tensor,
                            pairs_per_block: int = RERANK_BLOCK_PAIRS) -> torch.Tensor:
    """GPU batches: a block of queries is scored against the union of its candidates in one call
    and each query keeps its own k. Scoring the extra pairs costs less on a GPU than thousands of
    small launches, one per video."""
    count, k = candidates.shape
    scores = torch.empty(count, k, device=candidates.device)
    block = max(1, int((pairs_per_block / k) ** 0.5))  # block x (up to block * k) pairs
    for start in range(0, count, block):
        rows = candidates[start : start + block]
        union, position = torch.unique(rows, return_inverse=True)
        block_scores = head.similarity(select_rows(queries, range(start, start + len(rows))), select_rows(videos, union))
        scores[start : start + len(rows)] = block_scores.gather(1, position)
    return scores


@torch.no_grad()
def two_stage_scores(head: RetrievalHead, queries: State, videos: State, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores [Q, V], candidate mask [Q, V]): coarse for all videos, fine for each query's top-k."""
    coarse = head.coarse_similarity(queries, videos)
    top_k = min(top_k, coarse.shape[1])
    candidates = coarse.topk(top_k, dim=1).indices
    fine = rerank_candidates(head, queries, videos, candidates)
    mask = torch.zeros_like(coarse, dtype=torch.bool).scatter(1, candidates, True)
    return coarse.scatter(1, candidates, fine), mask


def rank_order(scores: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
    """Scores to rank by: candidates (if any) lifted above every non-candidate."""
    return scores if candidates is None else scores + RERANK_OFFSET * candidates


def score_matrix(head: RetrievalHead, queries: State, videos: State,
                 rerank_top_k: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(scores, candidate mask or None): all pairs when rerank_top_k is None, else two-stage."""
    if rerank_top_k is None:
        return all_pair_scores(head, queries, videos), None
    return two_stage_scores(head, queries, videos, rerank_top_k)
