"""How many threads the backends' inserts and searches made from the calling thread may use.

FAISS parallelises with OpenMP, whose thread count is a per-thread setting: a background thread that
inserts while another thread serves queries can hold itself to one core without changing what the
query thread uses. USearch takes its thread count per call (see :mod:`indexers.usearch_index`).
"""

from __future__ import annotations

import functools

__all__ = ["all_cores", "use_threads"]


@functools.cache
def all_cores() -> int:
    """OpenMP's default thread count in this process (the cores it may use)."""
    import faiss

    return int(faiss.omp_get_max_threads())


def use_threads(n: int | None) -> None:
    """Let FAISS calls made from the calling thread use ``n`` OpenMP threads (``None``: the default,
    :func:`all_cores`). Other threads keep their own setting."""
    import faiss

    faiss.omp_set_num_threads(all_cores() if n is None else max(int(n), 1))
