import numpy as np
import pytest

from vectorstore import InvalidInputError
from vectorstore.datasets import derive_vectors, load_sts, sts_sentences


def test_load_sts_reads_tabs_and_literal_quotes(tmp_path):
    f = tmp_path / "sts.csv"
    f.write_text(
        'g\tf\t2012\t0001\t4.5\tHe said "hi".\tA "quoted" one\textra\n\ng\tf\t2012\t2\t0\tb\tHe said "hi".\n'
    )
    pairs = load_sts(f)
    assert [(p.sentence1, p.sentence2, p.score) for p in pairs] == [
        ('He said "hi".', 'A "quoted" one', 4.5),
        ("b", 'He said "hi".', 0.0),
    ]
    assert sts_sentences(pairs) == ['He said "hi".', 'A "quoted" one', "b"]


def test_load_sts_names_the_bad_line(tmp_path):
    f = tmp_path / "sts.csv"
    f.write_text("g\tf\t2012\t1\t1.0\ta\tb\ng\tf\t2012\t2\tNaN?\ta\tb\n")
    with pytest.raises(InvalidInputError, match=r"sts.csv:2"):
        load_sts(f)
    f.write_text("only\tthree\tfields\n")
    with pytest.raises(InvalidInputError, match=r"sts.csv:1: expected 7"):
        load_sts(f)


def test_derive_vectors_keeps_base_rows_and_unit_norm():
    base = np.random.default_rng(0).standard_normal((10, 6)).astype(np.float32)
    out = derive_vectors(base, 50, noise=0.01, seed=3)
    assert out.shape == (50, 6) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out[:10], base / np.linalg.norm(base, axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_array_equal(out, derive_vectors(base, 50, noise=0.01, seed=3))
