"""FAISS backends: ``faiss-flat``, ``faiss-hnsw``, ``faiss-hnsw-sq``, ``faiss-ivf`` and ``faiss-ivfpq``, one
module per kind.

Cosine is served as inner product over L2-normalised vectors; euclidean scores are ``-sqrt(L2²)``;
manhattan uses FAISS's L1 metric (flat, HNSW and IVF-flat only; PQ codes cannot do L1).

Loading maps the large flat float storage of ``faiss-flat``, ``faiss-hnsw`` and ``faiss-ivfpq`` (its
refinement copy) read-only from the file instead of copying it: processes that open the same files
share those pages, and opening costs no copy. The first ``add`` or ``remove`` afterwards copies the
index into memory once (FAISS cannot write to mapped storage). Index files are replaced by rename,
never rewritten in place, so a mapping stays valid.

GPU: when FAISS reports GPUs (the ``faiss-gpu`` package), ``faiss-flat`` and ``faiss-ivf`` search a
GPU replica of the CPU index (``device="auto"``); ``device="cpu"`` forces CPU. The CPU index stays
the master copy, so saving and removal behave the same everywhere.
"""

from __future__ import annotations

from indexers.faiss.common import faiss_gpu_count
from indexers.faiss.flat import FaissFlatIndex
from indexers.faiss.hnsw import FaissHNSWIndex
from indexers.faiss.hnsw_sq import FaissHNSWSQIndex
from indexers.faiss.ivf import FaissIVFIndex
from indexers.faiss.ivfpq import FaissIVFPQIndex, FaissRefinedIVFPQIndex

__all__ = [
    "FaissFlatIndex",
    "FaissHNSWIndex",
    "FaissHNSWSQIndex",
    "FaissIVFIndex",
    "FaissIVFPQIndex",
    "FaissRefinedIVFPQIndex",
    "faiss_gpu_count",
]
