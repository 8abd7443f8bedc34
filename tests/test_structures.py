"""The coarse index structure chosen by size and memory budget, built with real faiss.

The rule tests use hand-computed sizes for 384-d float32: HNSW32 needs 384*4 + 32*2*4 + 16 = 1808
bytes a vector; IVF-PQ64 needs 64 + 8 (code, id) a vector, plus 1536 (the float vectors kept for the
exact re-score) or 384 (8-bit copies), plus 1536 bytes a list and 1536 * 256 for the PQ codebooks."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from vtr_core.errors import IndexMismatchError, VtrError
from vtr_core.index.structures import (
    FLAT_MAX_COUNT,
    SHORTLIST_FACTOR,
    StructurePlan,
    build_structure,
    choose_structure,
    ivf_lists,
    pq_bytes,
    search_structure,
    training_size,
)

GiB = 1 << 30
MiB = 1 << 20


# --- the rules -------------------------------------------------------------------------------------


def test_flat_below_the_threshold_and_hnsw_from_it():
    assert FLAT_MAX_COUNT == 20_000
    below = choose_structure(19_999, 384)
    assert (below.factory, below.search_params, below.refine) == ("Flat", {}, False)
    assert below.memory_bytes == 19_999 * 384 * 4
    at = choose_structure(20_000, 384)
    assert (at.factory, at.search_params, at.refine) == ("HNSW32", {"efSearch": 256}, False)
    assert at.memory_bytes == 20_000 * 1808


@pytest.mark.parametrize(
    "count, ef",
    [(20_000, 256), (50_000, 256), (50_001, 512), (100_000, 512), (100_001, 1280), (1_000_000, 1280),
     (1_000_001, 2048)],
)
def test_hnsw_search_width_grows_with_size(count, ef):
    assert choose_structure(count, 384, memory_budget_bytes=64 * GiB).search_params == {"efSearch": ef}


def test_hnsw_while_vectors_and_graph_fit_the_budget_then_ivfpq_with_exact_rescore():
    last = (4 * GiB) // 1808  # 2,375,535 vectors of 1808 bytes fit 4 GiB
    assert last == 2_375_535
    assert choose_structure(last, 384).factory == "HNSW32"
    beyond = choose_structure(last + 1, 384)
    # nlist: 4 * sqrt(2,375,536) = 6165, nearest power of two 8192; 64-byte codes (6-d subvectors)
    assert beyond.factory == "IVF8192,PQ64"
    assert beyond.refine and beyond.shortlist_factor == SHORTLIST_FACTOR == 20
    assert beyond.search_params == {"nprobe": 128}
    assert beyond.memory_bytes == (last + 1) * 1608 + 8192 * 1536 + 256 * 1536
    assert "float vectors" in beyond.why and "\n" not in beyond.why


def test_a_small_budget_sends_a_mid_size_collection_to_ivfpq_with_refine():
    # 30,000 x 1808 = 54.2 MB of HNSW does not fit 50 MiB (52.4 MB); 30,000 x 1608 + 1.2 MB of IVF-PQ does
    plan = choose_structure(30_000, 384, memory_budget_bytes=50 * MiB)
    assert plan.factory == "IVF512,PQ64"  # 4 * sqrt(30,000) = 693 -> 512
    assert plan.refine and plan.search_params == {"nprobe": 64}
    assert plan.memory_bytes == 30_000 * 1608 + 512 * 1536 + 256 * 1536 <= 50 * MiB


def test_a_budget_below_the_float_vectors_drops_the_exact_rescore_and_says_why():
    # the floats alone (46 MB) do not fit 20 MiB; SQ8 copies (384 B each) do
    sq8 = choose_structure(30_000, 384, memory_budget_bytes=20 * MiB)
    assert sq8.factory == "IVF512,PQ64,Refine(SQ8)" and not sq8.refine
    assert sq8.search_params == {"nprobe": 64, "k_factor_rf": SHORTLIST_FACTOR}
    assert sq8.memory_bytes == 30_000 * (64 + 8 + 384) + 512 * 1536 + 256 * 1536
    alone = choose_structure(30_000, 384, memory_budget_bytes=5 * MiB)
    assert alone.factory == "IVF512,PQ64" and not alone.refine
    assert alone.memory_bytes == 30_000 * 72 + 512 * 1536 + 256 * 1536
    assert "no re-score" in alone.why


def test_flat_stays_below_the_threshold_whatever_the_budget():
    plan = choose_structure(10_000, 384, memory_budget_bytes=1 * MiB)
    assert plan.factory == "Flat" and "over the 1 MiB budget" in plan.why


def test_structure_sizes_for_other_widths():
    assert [pq_bytes(d) for d in (384, 512, 768, 256, 100, 3)] == [64, 64, 64, 64, 25, 1]
    assert [ivf_lists(n) for n in (30_000, 100_000, 1_000_000, 10**12)] == [512, 1024, 4096, 65536]
    # 512-d: HNSW 5M x 2320 = 11.6 GB; IVF-PQ64 with floats 5M x 2120 + 17.3 MB = 10.6 GB
    assert choose_structure(5_000_000, 512, memory_budget_bytes=11 * GiB).factory == "HNSW32"
    assert choose_structure(5_000_000, 512, memory_budget_bytes=10 * GiB).factory == "IVF8192,PQ64"


def test_the_training_sample_is_bounded():
    assert training_size(30_000, 512) == 30_000  # 256 x 512 = 131,072 > the collection
    assert training_size(1_000_000, 1024) == 262_144  # 256 a list
    assert training_size(100_000, 16) == 9_984  # 39 x 256: enough for the PQ codebooks
    assert training_size(10**8, 65536) == training_size(10**8, None) == 1 << 20


def test_why_is_one_readable_line():
    plan = choose_structure(120_000, 384)
    assert plan.why == ("120,000 vectors x 384-d = 175.8 MiB: HNSW32, efSearch 1280 "
                        "(vectors + graph 206.9 MiB fit the 4 GiB budget)")


def test_a_users_factory_string_wins_and_gets_search_parameters_by_size():
    assert choose_structure(10, 384, override="HNSW32").search_params == {"efSearch": 256}
    assert choose_structure(10**9, 384, memory_budget_bytes=MiB, override="Flat").factory == "Flat"
    ivf = choose_structure(1_000, 384, override="IVF16,PQ32")
    assert ivf.factory == "IVF16,PQ32" and ivf.search_params == {"nprobe": 16}  # nprobe capped at nlist
    refined = choose_structure(1_000, 384, override="IVF16,PQ32,RFlat")
    assert refined.search_params == {"nprobe": 16, "k_factor_rf": SHORTLIST_FACTOR}


@pytest.mark.parametrize("bad", ["HNSWxx", "PQ7", "IVF,Flat"])
def test_a_bad_factory_string_is_a_one_line_error_naming_it(bad):
    with pytest.raises(VtrError) as caught:
        choose_structure(1_000, 384, override=bad)
    message = str(caught.value)
    assert repr(bad) in message and "\n" not in message and len(message) < 250
    assert caught.value.setting == "faiss_factory"


# --- build and search on real vectors --------------------------------------------------------------


@pytest.fixture(scope="module")
def collection():
    """30,000 unit vectors in 200 anisotropic Gaussian clusters (384-d) and 200 queries near members."""
    rng = np.random.default_rng(7)
    dim, count = 384, 30_000
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0] * np.arange(1, dim + 1) ** -0.3
    basis /= np.sqrt((basis**2).sum())
    centers = rng.standard_normal((200, dim)) @ basis.T
    owner = rng.integers(0, 200, count)
    vectors = centers[owner] + 0.5 * rng.standard_normal((count, dim)) @ basis.T
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    queries = vectors[rng.choice(count, 200, replace=False)] + 0.5 * rng.standard_normal((200, dim)) @ basis.T
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    exact = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :10]
    return vectors, queries, exact


def recall_at_10(ids: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact, strict=True)]))


def test_flat_is_exact(collection):
    vectors, queries, exact = collection
    index = build_structure(vectors, choose_structure(10_000, 384))
    scores, ids = search_structure(index, queries, 10)
    assert ids.shape == (200, 10) and recall_at_10(ids, exact) == 1.0
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, ids, axis=1), atol=1e-5)


def test_hnsw_reaches_the_recall_target(collection):
    vectors, queries, exact = collection
    plan = choose_structure(len(vectors), 384)
    assert plan.factory == "HNSW32"
    index = build_structure(vectors, plan)
    assert index.hnsw.efSearch == 256
    assert recall_at_10(search_structure(index, queries, 10)[1], exact) >= 0.95
    # the memory estimate is the resident size: the serialised index holds the same arrays
    assert abs(faiss.serialize_index(index).nbytes - plan.memory_bytes) < 0.01 * plan.memory_bytes


def rescored(collection, budget: int, kind, atol: float):
    """An IVF-PQ structure whose shortlist is re-scored, built for `budget`: it reaches the recall
    target, its scores are the inner products within `atol`, its memory estimate is its size."""
    vectors, queries, exact = collection
    plan = choose_structure(len(vectors), 384, memory_budget_bytes=budget)
    index = build_structure(vectors, plan)
    assert isinstance(index, kind) and index.k_factor == SHORTLIST_FACTOR
    scores, ids = search_structure(index, queries, 10)
    assert recall_at_10(ids, exact) >= 0.95
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, ids, axis=1), atol=atol)
    assert abs(faiss.serialize_index(index).nbytes - plan.memory_bytes) < 0.01 * plan.memory_bytes
    return index


def test_ivfpq_with_exact_rescore_reaches_the_target_with_exact_scores(collection):
    index = rescored(collection, 50 * MiB, faiss.IndexRefineFlat, atol=1e-5)
    assert faiss.extract_index_ivf(index).nprobe == 64
    # the re-score is what reaches the target: the PQ codes alone rank far worse (0.62 measured)
    vectors, queries, exact = collection
    assert recall_at_10(search_structure(index.base_index, queries, 10)[1], exact) < 0.9


def test_ivfpq_rescored_from_8bit_copies_when_the_floats_do_not_fit(collection):
    # 8-bit copies: near the exact inner products (measured error 0.0014), not equal to them
    rescored(collection, 20 * MiB, faiss.IndexRefine, atol=0.01)


def test_search_parameters_survive_serialisation(collection):
    vectors = collection[0][:2_000]
    plan = StructurePlan("IVF16,PQ48", {"nprobe": 5}, refine=True, shortlist_factor=3)
    index = faiss.deserialize_index(faiss.serialize_index(build_structure(vectors, plan)))
    assert (faiss.extract_index_ivf(index).nprobe, index.k_factor) == (5, 3)


# --- edges -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", ["Flat", "HNSW32"])
def test_an_empty_index_answers_no_hits(factory):
    index = build_structure(np.empty((0, 384), np.float32), StructurePlan(factory, {}))
    scores, ids = search_structure(index, np.ones((3, 384), np.float32), 10)
    assert scores.shape == ids.shape == (3, 0) and ids.dtype == np.int64 and scores.dtype == np.float32


def test_a_trained_structure_cannot_be_built_from_no_vectors():
    with pytest.raises(VtrError, match="cannot train faiss structure 'IVF16,PQ48' on 0 vectors"):
        build_structure(np.empty((0, 384), np.float32), StructurePlan("IVF16,PQ48", {"nprobe": 4}))


@pytest.mark.parametrize("factory", ["Flat", "HNSW32"])
def test_k_beyond_the_collection_returns_every_vector_ranked(factory, collection):
    vectors, queries = collection[0][:5], collection[1][:2]
    index = build_structure(vectors, StructurePlan(factory, {"efSearch": 16} if factory == "HNSW32" else {}))
    scores, ids = search_structure(index, queries, 50)
    assert ids.shape == (2, 5) and all(sorted(row) == [0, 1, 2, 3, 4] for row in ids)
    expected = np.sort(queries @ vectors.T, axis=1)[:, ::-1]
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_one_query_vector_and_a_wrong_width():
    index = build_structure(np.eye(4, 384, dtype=np.float32), StructurePlan("Flat", {}))
    scores, ids = search_structure(index, np.eye(1, 384, 2, dtype=np.float32)[0], 1)
    assert ids.tolist() == [[2]] and scores.tolist() == [[1.0]]
    with pytest.raises(IndexMismatchError, match="do not fit a 384-d index"):
        search_structure(index, np.ones((1, 512), np.float32), 1)


def test_an_unknown_search_parameter_is_named():
    with pytest.raises(VtrError, match="'Flat' has no search parameter 'nprobe'"):
        build_structure(np.eye(2, 384, dtype=np.float32), StructurePlan("Flat", {"nprobe": 4}))
