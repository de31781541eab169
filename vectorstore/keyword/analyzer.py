"""Text -> index terms: Unicode word split, case folding, diacritics removed, English stop words
dropped, Porter stemming. One :class:`Analyzer` is used for documents and queries alike, so user
text is never parsed as a query language: whatever it holds, a query is the OR of its terms."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vectorstore.errors import InvalidInputError

__all__ = ["LUCENE_STOPWORDS", "Analyzer"]

# Lucene's (and Anserini's, Elasticsearch's) English stop set: short, so that few content words are lost.
LUCENE_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "if",
        "in",
        "into",
        "is",
        "it",
        "no",
        "not",
        "of",
        "on",
        "or",
        "such",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "will",
        "with",
    ]
)

# Letters, digits and other alphanumerics (Unicode); underscore and everything else separates words.
_WORD = re.compile(r"[^\W_]+")
_MAX_CACHE = 500_000


def _strip_marks(word: str) -> str:
    """``word`` without combining marks (é -> e), after compatibility decomposition (ﬁ -> fi)."""
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def _load_stemmer(language: str) -> Any:
    try:
        import Stemmer  # PyStemmer: the Snowball stemmers in C
    except ImportError:  # pragma: no cover - PyStemmer is a dependency; snowballstemmer is its fallback
        try:
            import snowballstemmer
        except ImportError as exc:
            raise InvalidInputError(
                "keyword search needs PyStemmer (pip install PyStemmer) for stemming, or stemmer=None"
            ) from exc
        return snowballstemmer.stemmer(language)
    return Stemmer.Stemmer(language)


@dataclass
class Analyzer:
    """Turns text into the terms the BM25 index stores and queries with.

    Attributes:
        stemmer: a Snowball stemmer name (``"porter"``, ``"english"``, ...) or None for no stemming.
        stopwords: words dropped after case folding (the default is Lucene's English stop set).
        min_length: shorter tokens are dropped.
    """

    stemmer: str | None = "porter"
    stopwords: frozenset[str] = LUCENE_STOPWORDS
    min_length: int = 1
    _stem: Any = field(default=None, init=False, repr=False, compare=False)
    _cache: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.stopwords = frozenset(w.casefold() for w in self.stopwords)
        if self.stemmer is not None:
            self._stem = _load_stemmer(self.stemmer)

    def words(self, text: str) -> list[str]:
        """The case-folded, diacritics-free words of ``text``, before stop words and stemming."""
        words = _WORD.findall(text.casefold())
        if text.isascii():
            return words
        return [w if w.isascii() else _strip_marks(w) for w in words]

    def terms(self, text: str) -> list[str]:
        """Index terms of ``text`` in order (repeats kept: they are the term frequencies)."""
        words = self.words(text)
        cache = self._cache
        try:
            return [t for w in words if (t := cache[w])]
        except KeyError:
            self._learn(words)
            return [t for w in words if (t := cache[w])]

    def many(self, texts: Iterable[str]) -> list[list[str]]:
        """:meth:`terms` of each text."""
        return [self.terms(t) for t in texts]

    def _learn(self, words: list[str]) -> None:
        """Stem the words not seen yet (stop words and short words map to "", which is dropped)."""
        cache = self._cache
        if len(cache) > _MAX_CACHE:
            cache.clear()
        fresh = [w for w in dict.fromkeys(words) if w not in cache]
        keep = [w for w in fresh if w not in self.stopwords and len(w) >= self.min_length]
        cache.update(dict.fromkeys(fresh, ""))
        if self._stem is None:
            stems = keep
        elif hasattr(self._stem, "stemWords"):
            stems = self._stem.stemWords(keep)
        else:  # pragma: no cover - snowballstemmer fallback
            stems = [self._stem.stemWord(w) for w in keep]
        cache.update(zip(keep, stems))
