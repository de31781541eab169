"""Session-scoped models and data; every test runs offline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.helpers import bundled_model_dir, sts_dir_or_none
from vectorstore.datasets import load_sts, sts_sentences


@pytest.fixture(scope="session")
def sts_dir() -> Path:
    d = sts_dir_or_none()
    if d is None:
        pytest.skip("STS benchmark data not found at ../shared/data/stsbenchmark (set VECTORSTORE_STS_DIR)")
    return d


@pytest.fixture(scope="session")
def dev_pairs(sts_dir: Path) -> list:
    return load_sts(sts_dir / "sts-dev.csv")


@pytest.fixture(scope="session")
def dev_sentences(dev_pairs: list) -> list[str]:
    return sts_sentences(dev_pairs)[:600]


@pytest.fixture(scope="session")
def model():
    from vectorstore import SentenceTransformer

    return SentenceTransformer("all-MiniLM-L6-v2", device="cpu")


@pytest.fixture(scope="session")
def ref_model():
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(bundled_model_dir()), device="cpu")


@pytest.fixture(scope="session")
def dev_embeddings(model, dev_sentences: list[str]) -> np.ndarray:
    return model.encode(dev_sentences, batch_size=64)


@pytest.fixture(scope="session")
def ref_dev_embeddings(ref_model, dev_sentences: list[str]) -> np.ndarray:
    return ref_model.encode(dev_sentences, batch_size=64)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def sts_all(sts_dir: Path, model) -> tuple[list[str], np.ndarray]:
    """Every distinct STS train+dev sentence (~13k real texts) and its embedding."""
    sentences = sts_sentences(load_sts(sts_dir / "sts-train.csv") + load_sts(sts_dir / "sts-dev.csv"))
    return sentences, model.encode(sentences, batch_size=64)
