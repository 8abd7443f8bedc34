"""Which faiss structure holds the coarse vectors, chosen from the collection's size and a memory
budget the way autofaiss does: exact Flat while a scan is cheap, an HNSW graph while the vectors and
the graph fit in memory, IVF-PQ with an exact re-score of a shortlist beyond that (from 8-bit copies,
then from nothing, when even the float vectors do not fit). A factory string given by the user wins.

All structures use the inner-product metric on float32 vectors (the index stores L2-normalised
coarse vectors, so inner product is cosine similarity). The search parameters (efSearch, nprobe,
k_factor) are set on the built index and are kept by `faiss.serialize_index`.

The constants below were tuned on this 2-core machine (single-query p50, one thread, while another
engineer's jobs shared the cores) with synthetic unit vectors in 384-d: a narrow cone (mean cosine
0.27) with a covariance spectrum ~ i^-0.6 (participation ratio ~150), as ~N/50 Zipf-sized clusters
("clustered") or as one Gaussian ("cone": for HNSW a little harder than the Gaussian fitted to MSR-VTT
in docs/PERFORMANCE.md); queries are members moved by a fixed modality-gap offset and noise.
recall@10 is against exact brute force, over 500 queries. 512-d (CLIP) was not measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vtr_core.errors import IndexMismatchError, VtrError

# Below this size Flat is exact and about as fast as HNSW on hard data: single-query p50 0.67 ms at
# 10k, 1.29 ms at 20k, 3.30 ms at 50k (measured on this 2-core machine, clustered synthetic vectors;
# 13 ms at 100k in docs/PERFORMANCE.md), against HNSW32 at efSearch 256 on cone vectors, 1.14 ms at 30k.
FLAT_MAX_COUNT = 20_000

HNSW_M = 32
# Resident bytes per vector on top of its float32 values: 2*M int32 links on level 0, ~4 more for the
# upper levels (a 1/M share of vectors with M links each), and its level (int32) and offset (int64).
# With the float vectors this matched the serialised size of a 30k index within 0.01%.
HNSW_GRAPH_BYTES = HNSW_M * 2 * 4 + 16

# efSearch by collection size, (up to count, efSearch): the smallest width reaching recall@10 >= 0.95
# on the harder data measured (cone synthetic vectors on this 2-core machine; the Gaussian fitted to
# MSR-VTT in docs/PERFORMANCE.md, 2 cores too). Clustered synthetic vectors need less (64 at 100k: 0.953).
# - 30k, cone: 128 -> 0.932, 256 -> 0.973 (1.14 ms p50), 512 -> 0.991 (1.83 ms).
# - 100k, cone: 256 -> 0.911, 512 -> 0.958 (3.9 ms with the cores shared); clustered: 512 -> 0.992
#   (0.93 ms); fitted Gaussian (PERFORMANCE.md): 512 -> 0.978 (1.51 ms).
# - 1M, fitted Gaussian (PERFORMANCE.md): 1024 -> 0.947 (6.4 ms). 1M clustered (bench scale's index,
#   one query, warm): 1024 -> 0.940 (4.1 ms), 1280 -> 0.962 (4.6 ms), 1536 -> 0.982 (5.4 ms), 2048 ->
#   0.984 (7.5 ms). Beyond 1M a wider beam still: 2048 is extrapolated, not measured.
HNSW_EF_SEARCH = ((50_000, 256), (100_000, 512), (1_000_000, 1280))
HNSW_EF_SEARCH_BEYOND = 2048

IVF_LISTS_PER_SQRT = 4  # nlist ~ 4 * sqrt(N) (the faiss guidelines), rounded to a power of two
IVF_MAX_LISTS = 65536
# PQ code: at most 64 bytes, subvectors of at least 4 dimensions: PQ64 for 384-d (6-d subvectors) and
# 512-d. At 100k clustered, nprobe 32, shortlist x20: PQ64 -> recall@10 0.990, PQ48 -> 0.973 (this
# machine); the 16 extra bytes a vector are 1% of the floats kept for the re-score.
PQ_MAX_BYTES = 64
PQ_MIN_SUBVECTOR_DIM = 4
PQ_CENTROIDS = 256  # 8-bit codes
# nprobe by collection size (capped at nlist). At 100k (IVF1024,PQ64, shortlist x20), measured on this
# 2-core machine: clustered 16 -> 0.989 (0.33 ms), 32 -> 0.990, 64 -> 0.991 (0.52 ms); cone 32 -> 0.603,
# 64 -> 0.749, 128 -> 0.863 (1.47 ms). Unclustered vectors defeat IVF's partition whatever the
# probes: HNSW is preferred whenever it fits. 128 and 256 beyond 1M are extrapolated, not measured.
IVF_NPROBE = ((1_000_000, 64), (10_000_000, 128))
IVF_NPROBE_BEYOND = 256
# Re-score k * 20 candidates: at 100k clustered, PQ64, nprobe 32: x4 -> 0.844, x10 -> 0.955, x20 ->
# 0.990 (PQ codes alone 0.516); re-scoring 200 vectors costs microseconds (p50 0.3-0.5 ms in all).
SHORTLIST_FACTOR = 20
# When the float vectors do not fit either: re-score from 8-bit scalar-quantised copies (dim bytes a
# vector, faiss "Refine(SQ8)"): 100k clustered, IVF1024,PQ64, nprobe 32, x20: 0.966 (0.40 ms), exact 0.990.
SQ8_REFINE = "Refine(SQ8)"
# Training sample: faiss k-means uses at most 256 points per centroid anyway; the cap bounds the
# sample's memory (1.5 GiB at 384-d) and the training time on 2 cores (nlist >= 8192 gets fewer).
TRAIN_PER_LIST = 256
TRAIN_MIN = 39 * PQ_CENTROIDS  # below this faiss warns that the PQ codebooks are undertrained
TRAIN_MAX = 1 << 20
TRAIN_SEED = 0


@dataclass
class StructurePlan:
    """A faiss structure and how to search it, with the reason in one readable line."""

    factory: str  # faiss index_factory string, built with METRIC_INNER_PRODUCT
    search_params: dict = field(default_factory=dict)  # {"efSearch": 512} or {"nprobe": 32}
    refine: bool = False  # wrap in IndexRefineFlat: exact re-score of a shortlist from stored floats
    shortlist_factor: int = 1  # with a re-score: the base index returns k * shortlist_factor candidates
    why: str = ""
    memory_bytes: int = 0  # estimated resident size of the built index


def _faiss():
    import faiss  # imported on use, as vtr_core.index.manifest does

    return faiss


def _size(n: float) -> str:
    """Bytes for a reader: "512 B", "17.6 MiB", "4 GiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            break
        n /= 1024
    return f"{n:.1f}".rstrip("0").rstrip(".") + f" {unit}"


def _by_size(table: tuple[tuple[int, int], ...], beyond: int, count: int) -> int:
    return next((value for limit, value in table if count <= limit), beyond)


def ivf_lists(count: int) -> int:
    """nlist: 4 * sqrt(count) rounded to the nearest power of two, within [1, 65536]."""
    target = IVF_LISTS_PER_SQRT * math.sqrt(max(count, 1))
    return int(min(IVF_MAX_LISTS, 2 ** round(math.log2(max(target, 1)))))


def pq_bytes(dim: int) -> int:
    """PQ code size m: the largest divisor of dim up to 64 bytes with subvectors of 4 or more dimensions."""
    limit = max(1, min(PQ_MAX_BYTES, dim // PQ_MIN_SUBVECTOR_DIM))
    return next(m for m in range(limit, 0, -1) if dim % m == 0)


def training_size(count: int, nlist: int | None) -> int:
    """Vectors to train on: 256 a list (all of them for a non-IVF structure), at least enough for the PQ
    codebooks, at most TRAIN_MAX, never more than the collection."""
    wanted = TRAIN_MAX if nlist is None else TRAIN_PER_LIST * nlist
    return min(count, max(TRAIN_MIN, min(wanted, TRAIN_MAX)))


def _reason(exc: Exception) -> str:
    """The readable tail of a faiss error ("Error in <signature> at <file>:<line>: <reason>")."""
    lines = str(exc).strip().splitlines()
    return lines[-1].split(": ")[-1][:120] if lines else type(exc).__name__


def _check_factory(factory: str, dim: int):
    """An empty inner-product index of `factory`, or a one-line VtrError naming the string."""
    faiss = _faiss()
    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise VtrError(f"faiss factory string {factory!r} is not valid for {dim}-d vectors ({_reason(exc)})",
                       setting="faiss_factory") from None


def _override_plan(count: int, dim: int, budget: int, factory: str) -> StructurePlan:
    """The user's structure, with search parameters chosen by size where it has any."""
    faiss = _faiss()
    index = _check_factory(factory, dim)
    params: dict = {}
    per_vector = dim * 4
    if hasattr(index, "hnsw"):
        params["efSearch"] = _by_size(HNSW_EF_SEARCH, HNSW_EF_SEARCH_BEYOND, count)
        per_vector += index.hnsw.nb_neighbors(0) * 4 + 16
    else:
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            params["nprobe"] = min(ivf.nlist, _by_size(IVF_NPROBE, IVF_NPROBE_BEYOND, count))
        if isinstance(index, faiss.IndexRefine):  # ",RFlat" or ",Refine(...)": re-score a shortlist
            params["k_factor_rf"] = SHORTLIST_FACTOR
        try:
            per_vector = int(index.sa_code_size()) + (8 if ivf is not None else 0)
        except RuntimeError:  # no standalone code size: count the float vectors
            pass
    memory = count * per_vector
    why = (f"{count:,} vectors x {dim}-d: {factory} as given (about {_size(memory)}"
           f"{'' if memory <= budget else ', over the ' + _size(budget) + ' budget'})")
    return StructurePlan(factory, params, False, 1, why, memory)


def ivfpq_memory(count: int, dim: int, nlist: int, m: int, rescore_bytes: int = 0) -> int:
    """Codes and int64 ids in the inverted lists, centroids, PQ codebooks, and per vector the copy
    kept for the re-score (dim * 4 floats for IndexRefineFlat, dim bytes for SQ8)."""
    return count * (m + 8 + rescore_bytes) + nlist * dim * 4 + PQ_CENTROIDS * dim * 4


def _ivfpq_plan(count: int, dim: int, budget: int, head: str, hnsw: int) -> StructurePlan:
    """IVF-PQ re-scored exactly if the floats fit, else from SQ8 copies if they fit, else alone."""
    nlist, m = ivf_lists(count), pq_bytes(dim)
    nprobe = min(nlist, _by_size(IVF_NPROBE, IVF_NPROBE_BEYOND, count))
    factory, params = f"IVF{nlist},PQ{m}", {"nprobe": nprobe}
    exact = ivfpq_memory(count, dim, nlist, m, dim * 4)
    instead = f"HNSW{HNSW_M} would need {_size(hnsw)}"
    if exact <= budget:
        why = (f"{head}: {factory}, nprobe {nprobe}, exact re-score of k x {SHORTLIST_FACTOR} (PQ codes + the float "
               f"vectors kept for the re-score {_size(exact)}; {instead} > the {_size(budget)} budget)")
        return StructurePlan(factory, params, True, SHORTLIST_FACTOR, why, exact)
    sq8 = ivfpq_memory(count, dim, nlist, m, dim)
    if sq8 <= budget:
        why = (f"{head}: {factory}, nprobe {nprobe}, re-score of k x {SHORTLIST_FACTOR} from 8-bit copies, not "
               f"exact ({_size(sq8)}; the float vectors would make {_size(exact)} > the {_size(budget)} budget)")
        return StructurePlan(f"{factory},{SQ8_REFINE}", {**params, "k_factor_rf": SHORTLIST_FACTOR}, False,
                             SHORTLIST_FACTOR, why, sq8)
    codes = ivfpq_memory(count, dim, nlist, m)
    over = "" if codes <= budget else f"; over the {_size(budget)} budget even so"
    why = (f"{head}: {factory}, nprobe {nprobe}, no re-score: PQ codes alone, recall@10 0.4-0.6 "
           f"({_size(codes)}; 8-bit copies to re-score would make {_size(sq8)}{over})")
    return StructurePlan(factory, params, False, 1, why, codes)


def choose_structure(count: int, dim: int, memory_budget_bytes: int = 4 << 30,
                     override: str | None = None) -> StructurePlan:
    """The faiss structure for `count` vectors of `dim` floats within `memory_budget_bytes`.

    Rules, in order: a user's factory string wins (checked by building an empty index of it, so a
    typo is a VtrError naming it); below FLAT_MAX_COUNT vectors, Flat (exact; whatever the budget,
    nothing smaller is worth its recall loss there); while floats + HNSW32 graph fit, HNSW32 with
    efSearch by size; else IVF{nlist},PQ{m} with an exact re-score of k * SHORTLIST_FACTOR
    candidates (IndexRefineFlat, which keeps the float vectors in memory too) while that fits; else
    the re-score from 8-bit copies; else IVF-PQ alone.

    Limits: resident memory is estimated, not measured, and build-time peaks (the training sample)
    are not counted; the thresholds were tuned on 384-d synthetic vectors on 2 cores, and those past
    1M vectors are extrapolated; a plan is not revised as a collection grows: choose again then.
    """
    if count < 0 or dim < 1:
        raise ValueError(f"need count >= 0 and dim >= 1, got {count} and {dim}")
    if memory_budget_bytes <= 0:
        raise VtrError(f"memory budget must be positive, got {memory_budget_bytes} bytes", setting="memory_budget")
    if override:
        return _override_plan(count, dim, memory_budget_bytes, override)
    budget, flat = memory_budget_bytes, count * dim * 4
    head = f"{count:,} vectors x {dim}-d = {_size(flat)}"
    if count < FLAT_MAX_COUNT:
        over = "" if flat <= budget else f", over the {_size(budget)} budget"
        why = f"{head}: Flat (exact, under {FLAT_MAX_COUNT:,} vectors{over})"
        return StructurePlan("Flat", {}, False, 1, why, flat)
    hnsw = count * (dim * 4 + HNSW_GRAPH_BYTES)
    if hnsw > budget:
        return _ivfpq_plan(count, dim, budget, head, hnsw)
    ef = _by_size(HNSW_EF_SEARCH, HNSW_EF_SEARCH_BEYOND, count)
    why = f"{head}: HNSW{HNSW_M}, efSearch {ef} (vectors + graph {_size(hnsw)} fit the {_size(budget)} budget)"
    return StructurePlan(f"HNSW{HNSW_M}", {"efSearch": ef}, False, 1, why, hnsw)


def _training_sample(vectors: np.ndarray, index) -> np.ndarray:
    """A seeded random subset of `training_size` vectors, in collection order."""
    ivf = _faiss().try_extract_index_ivf(index)
    size = training_size(len(vectors), None if ivf is None else ivf.nlist)
    if size == len(vectors):
        return vectors
    rows = np.sort(np.random.default_rng(TRAIN_SEED).choice(len(vectors), size, replace=False))
    return vectors[rows]


def trained_empty(vectors: np.ndarray, plan: StructurePlan):
    """An empty inner-product faiss index for `plan`, trained on a bounded sample of the vectors, its
    search parameters set: vectors are added after (with ids, or not).

    With `plan.refine` the base index is wrapped in IndexRefineFlat (which stores every float vector
    again, see `plan.memory_bytes`) and returns exact inner products for k * shortlist_factor candidates.
    """
    faiss = _faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be [N, D], got shape {vectors.shape}")
    index = _check_factory(plan.factory, vectors.shape[1])
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and isinstance(faiss.downcast_index(ivf), faiss.IndexIVFPQ):
        # polysemous codes only serve Hamming filtering, unused here, and cost ~80 s to train at 30k on 2 cores
        faiss.downcast_index(ivf).do_polysemous_training = False
    if plan.refine:
        index = faiss.IndexRefineFlat(index)  # keeps a reference to the base index
        index.k_factor = float(plan.shortlist_factor)
    if not index.is_trained:
        sample = _training_sample(vectors, index)
        try:
            index.train(sample)
        except RuntimeError as exc:
            raise VtrError(f"cannot train faiss structure {plan.factory!r} on {len(sample):,} vectors "
                           f"({_reason(exc)})", setting="faiss_factory") from None
    return set_search_params(index, plan)


def set_search_params(index, plan: StructurePlan):
    """The plan's search parameters (efSearch, nprobe, k_factor_rf) set on a built or loaded index
    (through an IndexIDMap too), so a tuned constant applies to structures saved before it."""
    space = _faiss().ParameterSpace()
    for name, value in plan.search_params.items():
        try:
            space.set_index_parameter(index, name, value)
        except RuntimeError:
            raise VtrError(f"faiss structure {plan.factory!r} has no search parameter {name!r}",
                           setting="faiss_factory") from None
    return index


def build_structure(vectors: np.ndarray, plan: StructurePlan):
    """A filled inner-product faiss index for `plan` (`trained_empty`, then every vector added)."""
    index = trained_empty(vectors, plan)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


AUTO = "auto"  # the faiss factory that lets the collection's size choose


def build_faiss(vectors: np.ndarray, factory: str = AUTO):
    """Inner-product faiss index of the vectors: the structure `auto` chooses for their count, or the
    one a factory string names ("Flat", "HNSW32", "IVF256,PQ32", ...)."""
    plan = choose_structure(len(vectors), vectors.shape[1], override=None if factory == AUTO else factory)
    if not len(vectors):  # nothing to train on yet
        faiss = _faiss()
        return faiss.index_factory(vectors.shape[1], plan.factory, faiss.METRIC_INNER_PRODUCT)
    return build_structure(np.ascontiguousarray(vectors, dtype=np.float32), plan)


def search_structure(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores [Q, k'], ids [Q, k']) by inner product, k' = min(k, index size); an empty index gives
    [Q, 0]. An approximate index may find fewer than k': those slots hold id -1 and score -inf."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim == 1:
        queries = queries[None, :]
    if queries.ndim != 2 or queries.shape[1] != index.d:
        raise IndexMismatchError(f"queries of shape {queries.shape} do not fit a {index.d}-d index")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    kept = min(k, index.ntotal)
    if kept == 0 or len(queries) == 0:
        return np.empty((len(queries), kept), np.float32), np.empty((len(queries), kept), np.int64)
    scores, ids = index.search(queries, kept)
    scores[ids < 0] = -np.inf
    return scores, ids
