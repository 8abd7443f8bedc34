"""The synthetic collections the query suite searches: uniform unit vectors, or vectors drawn
like real ones, so N can reach 1M without decoding a million videos."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def unit_vectors(count: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    return F.normalize(torch.randn(count, dim, generator=generator), dim=-1)


@dataclass
class RealLikeVectors:
    """Synthetic video vectors drawn from a Gaussian with real videos' mean and covariance, and
    real caption vectors as queries.

    Uniform random vectors are an approximate index's hardest case; real features fill a narrow,
    anisotropic cone, and text queries sit apart from the videos (the modality gap). The fitted
    Gaussian keeps both but none of the clusters of a real collection: it is still harder than a
    real collection of the same size."""

    mean: np.ndarray  # [D]
    cholesky: np.ndarray  # [D, D] lower factor of the covariance
    queries: np.ndarray  # [Q, D] unit caption vectors
    source: str

    def videos(self, count: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((count, len(self.mean)), np.float32)
        for start in range(0, count, 100_000):  # bounded temporary memory at 1M
            stop = min(count, start + 100_000)
            out[start:stop] = self.mean + rng.standard_normal((stop - start, len(self.mean))) @ self.cholesky.T
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def real_like_vectors(video_vectors: np.ndarray, query_vectors: np.ndarray, source: str) -> RealLikeVectors:
    videos = np.asarray(video_vectors, np.float64)
    covariance = np.cov(videos, rowvar=False) + 1e-6 * np.eye(videos.shape[1])  # full rank when N < D
    queries = np.asarray(query_vectors, np.float32)
    return RealLikeVectors(videos.mean(0), np.linalg.cholesky(covariance),
                           queries / np.linalg.norm(queries, axis=1, keepdims=True), source)


def collection(count: int, dim: int, seed: int, generator: torch.Generator,
               real_like: RealLikeVectors | None) -> tuple[np.ndarray, np.ndarray]:
    """N coarse video vectors and 100 probe queries: uniform from `generator`, or drawn from
    `real_like` (videos seeded by N, queries picked among its captions)."""
    if real_like is None:
        coarse = unit_vectors(count, dim, generator).numpy()
        probes = unit_vectors(100, dim, generator).numpy()
    else:
        coarse = real_like.videos(count, seed + count)
        picked = np.random.default_rng(seed).choice(len(real_like.queries), 100, replace=False)
        probes = np.ascontiguousarray(real_like.queries[picked])
    return coarse, probes
