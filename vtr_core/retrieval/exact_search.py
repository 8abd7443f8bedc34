"""Exact inner-product search with torch: stage 1 on the GPU, where faiss-cpu cannot go.

One query against N coarse vectors is a matrix-vector product and a top-k: on a GPU its floor
is reading the N x D matrix once, so the vectors are kept there in float16 (half the bytes of
float32). The k winners are then re-scored in float32, so the returned scores carry no float16
rounding of the products; only which videos sit exactly at the k-th place can differ from an
exact float32 search, when their scores tie within float16's resolution (about 1e-3).
The interface is faiss's (`search(queries, k) -> (scores, rows)`, `ntotal`), so the searcher
uses either without knowing which.
"""

from __future__ import annotations

import numpy as np
import torch

# Bytes of the [queries, N] score block computed at once for a batch of queries.
SCORE_BLOCK_BYTES = 1 << 30


class TorchFlatIndex:
    """All vectors scored for every query, on `device` (float16 on CUDA, float32 on the CPU)."""

    def __init__(self, vectors: np.ndarray | torch.Tensor, device: str | torch.device = "cuda"):
        self.device = torch.device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        vectors = torch.as_tensor(np.ascontiguousarray(vectors, dtype=np.float32) if isinstance(vectors, np.ndarray) else vectors)
        if vectors.dim() != 2:
            raise ValueError(f"vectors must be [N, D], got {tuple(vectors.shape)}")
        self.vectors = vectors.to(self.device, self.dtype).contiguous()
        self.d = int(vectors.shape[1])

    @property
    def ntotal(self) -> int:
        return int(self.vectors.shape[0])

    @torch.no_grad()
    def search_tensors(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores float32 [Q, k], rows int64 [Q, k]) on the index's device, best first."""
        queries = queries.to(self.device, torch.float32)
        k = min(k, self.ntotal)
        if k <= 0 or len(queries) == 0:
            return (torch.zeros(len(queries), 0, device=self.device), torch.zeros(len(queries), 0, dtype=torch.long, device=self.device))
        block = max(1, SCORE_BLOCK_BYTES // (self.ntotal * self.vectors.element_size()))
        scores, rows = [], []
        for start in range(0, len(queries), block):
            chunk = queries[start : start + block]
            approximate = chunk.to(self.dtype) @ self.vectors.T  # [q, N]
            top = approximate.topk(k, dim=1, sorted=False).indices
            exact = torch.einsum("qd,qkd->qk", chunk, self.vectors[top].float())
            order = exact.argsort(dim=1, descending=True)
            scores.append(exact.gather(1, order))
            rows.append(top.gather(1, order))
        return torch.cat(scores), torch.cat(rows)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's signature: float32 [Q, D] queries -> (scores [Q, k], rows [Q, k]) as numpy."""
        queries = np.atleast_2d(queries)
        if queries.shape[1] != self.d:
            raise ValueError(f"queries have {queries.shape[1]} dimensions, the index {self.d}")
        scores, rows = self.search_tensors(torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)), k)
        return scores.cpu().numpy(), rows.cpu().numpy()
