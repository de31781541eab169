"""Keyword (BM25) search over a collection's documents: the analyzer, the in-memory index, and the
per-collection state that keeps it in step with the SQLite truth through the change log."""

from vectorstore.keyword.analyzer import Analyzer
from vectorstore.keyword.bm25 import BM25Index

__all__ = ["Analyzer", "BM25Index"]
