"""The numpy helpers every backend shares: normalisation and result ordering, against float64 oracles."""

from __future__ import annotations

import numpy as np
import pytest

from indexers.scoring import normalize_finite_rows, normalize_rows, order_results


def _unit64(x: np.ndarray) -> np.ndarray:
    wide = x.astype(np.float64)
    norms = np.linalg.norm(wide, axis=1, keepdims=True)
    return np.divide(wide, norms, out=np.zeros_like(wide), where=norms > 0)


@pytest.mark.parametrize("rows", [1, 5])
def test_normalize_rows_matches_float64_even_when_squares_overflow(rows):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((rows, 24)).astype(np.float32)
    x[0] *= np.float32(3e25)  # finite, but its float32 sum of squares overflows
    if rows > 1:
        x[1] = 0.0  # a zero row stays zero
    with np.errstate(over="ignore"):
        got = normalize_rows(x)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, _unit64(x), rtol=1e-6, atol=1e-7)
    assert np.linalg.norm(got[0].astype(np.float64)) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("rows", [1, 5])
def test_normalize_finite_rows_declines_rows_it_cannot_vouch_for(rng, rows):
    x = rng.standard_normal((rows, 24)).astype(np.float32)
    np.testing.assert_allclose(normalize_finite_rows(x), _unit64(x), rtol=1e-6, atol=1e-7)
    for bad in (np.nan, np.inf, np.float32(3e25)):
        y = x.copy()
        y[rows - 1, 2] = bad
        with np.errstate(over="ignore", invalid="ignore"):
            assert normalize_finite_rows(y) is None


def test_order_results_breaks_ties_by_key_in_single_rows_and_batches():
    keys = np.array([[9, 7, 4, 3, -1], [5, 6, 2, -1, -1]], dtype=np.int64)  # row 0: a tie, larger key first
    scores = np.array([[0.9, 0.5, 0.5, 0.1, -np.inf], [0.8, 0.7, 0.6, -np.inf, -np.inf]], dtype=np.float32)
    want_k = np.array([[9, 4, 7, 3, -1, -1], [5, 6, 2, -1, -1, -1]])
    got_k, got_s = order_results(keys, scores, 6)
    np.testing.assert_array_equal(got_k, want_k)
    assert got_s.shape == (2, 6) and (got_s[:, 5] == -np.inf).all()
    for row in range(2):  # the single-query path decides ties differently; it must agree
        one_k, one_s = order_results(keys[row : row + 1].copy(), scores[row : row + 1].copy(), 6)
        np.testing.assert_array_equal(one_k, want_k[row : row + 1])
        np.testing.assert_array_equal(one_s, got_s[row : row + 1])
    distinct_k, _ = order_results(np.array([[3, 1, 2]]), np.array([[0.3, 0.2, 0.1]], np.float32), 3)
    np.testing.assert_array_equal(distinct_k, [[3, 1, 2]])  # no ties: left as the backend sorted them


@pytest.mark.parametrize("n_queries", [1, 3, 8, 9, 40])
def test_products_match_float64_for_small_and_large_batches(rng, n_queries):
    """A few query rows go through FAISS's kernels on this thread, more through BLAS: both agree with
    float64 numpy, including an empty vector set."""
    from indexers.products import SMALL_BATCH, inner_products, squared_distances

    q = rng.standard_normal((n_queries, 24)).astype(np.float32)
    x = rng.standard_normal((130, 24)).astype(np.float32)
    want = q.astype(np.float64) @ x.astype(np.float64).T
    np.testing.assert_allclose(inner_products(q, x), want, rtol=1e-5, atol=1e-5)
    assert inner_products(q, x[:0]).shape == (n_queries, 0)
    sq = squared_distances(q, x)
    if n_queries > SMALL_BATCH:
        assert sq is None
    else:
        diff = q.astype(np.float64)[:, None, :] - x.astype(np.float64)[None]
        np.testing.assert_allclose(sq, (diff * diff).sum(-1), rtol=1e-5, atol=1e-5)


def test_euclidean_scores_of_huge_values_fall_back_to_float64(rng):
    """Squared differences of 1e20-sized values overflow float32: the float64 path answers instead."""
    from indexers.scoring import exact_scores

    x = (rng.standard_normal((5, 8)) * 1e20).astype(np.float32)
    q = x[:1] * 0.5
    want = -np.linalg.norm(x.astype(np.float64) - q.astype(np.float64), axis=1)
    got = exact_scores("euclidean", q, x)[0]
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(
        exact_scores("cosine", q, x)[0], exact_scores("cosine", np.tile(q, (9, 1)), x)[0], rtol=1e-6
    )


def test_small_batches_use_the_calling_thread_kernels_and_large_ones_blas(rng, monkeypatch):
    """Up to SMALL_BATCH query rows are computed with FAISS's per-row kernels (one call per row), more
    rows with one BLAS product (no kernel call)."""
    import faiss

    from indexers.products import SMALL_BATCH, inner_products, squared_distances

    calls: list[str] = []
    for name in ("fvec_inner_products_ny", "fvec_L2sqr_ny"):
        real = getattr(faiss, name)
        monkeypatch.setattr(faiss, name, lambda *a, _n=name, _r=real: (calls.append(_n), _r(*a))[1])
    x = rng.standard_normal((50, 16)).astype(np.float32)
    inner_products(rng.standard_normal((SMALL_BATCH, 16)), x)
    squared_distances(rng.standard_normal((2, 16)), x)
    assert calls == ["fvec_inner_products_ny"] * SMALL_BATCH + ["fvec_L2sqr_ny"] * 2
    calls.clear()
    inner_products(rng.standard_normal((SMALL_BATCH + 1, 16)), x)
    assert calls == []
