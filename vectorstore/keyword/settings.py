"""``KeywordSettings``: how a collection's documents are analysed and scored, stored with its config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vectorstore.errors import InvalidInputError
from vectorstore.keyword.analyzer import LUCENE_STOPWORDS, Analyzer

__all__ = ["KeywordSettings"]

_KEYS = {"stemmer", "stopwords", "min_length", "k1", "b"}


@dataclass(frozen=True)
class KeywordSettings:
    """The keyword index's analyzer and BM25 parameters.

    Attributes:
        stemmer: Snowball stemmer name (``"porter"`` default, ``"english"`` for Porter2, ...) or None.
        stopwords: ``"lucene"`` (Lucene's 33-word English set, the default), ``"none"``, or a list of words.
        min_length: tokens shorter than this are dropped.
        k1: BM25 term-frequency saturation.
        b: BM25 length normalisation.
    """

    stemmer: str | None = "porter"
    stopwords: str | tuple[str, ...] = "lucene"
    min_length: int = 1
    k1: float = 1.2
    b: float = 0.75

    def analyzer(self) -> Analyzer:
        """A fresh analyzer with these settings."""
        if self.stopwords == "lucene":
            words: frozenset[str] = LUCENE_STOPWORDS
        elif self.stopwords == "none":
            words = frozenset()
        else:
            words = frozenset(self.stopwords)
        return Analyzer(stemmer=self.stemmer, stopwords=words, min_length=self.min_length)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        stop = self.stopwords if isinstance(self.stopwords, str) else list(self.stopwords)
        return {
            "stemmer": self.stemmer,
            "stopwords": stop,
            "min_length": self.min_length,
            "k1": self.k1,
            "b": self.b,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> KeywordSettings:
        """From a user's ``keyword_options`` or a stored config (None: the defaults).

        Raises:
            InvalidInputError: an unknown option or a bad value.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"keyword_options must be a dict, got {type(data).__name__}")
        unknown = set(data) - _KEYS
        if unknown:
            raise InvalidInputError(f"unknown keyword option(s) {sorted(unknown)}; known: {sorted(_KEYS)}")
        stop = data.get("stopwords", "lucene")
        if isinstance(stop, str):
            if stop not in ("lucene", "none"):
                raise InvalidInputError(
                    f"stopwords must be 'lucene', 'none' or a list of words, got {stop!r}"
                )
        elif isinstance(stop, (list, tuple, set, frozenset)) and all(isinstance(w, str) for w in stop):
            stop = tuple(sorted(stop))
        else:
            raise InvalidInputError(
                f"stopwords must be 'lucene', 'none' or a list of words, got {stop!r:.80}"
            )
        stemmer = data.get("stemmer", "porter")
        if stemmer is not None and not isinstance(stemmer, str):
            raise InvalidInputError(f"stemmer must be a Snowball stemmer name or None, got {stemmer!r}")
        try:
            k1, b, min_length = (
                float(data.get("k1", 1.2)),
                float(data.get("b", 0.75)),
                data.get("min_length", 1),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"k1 and b must be numbers: {exc}") from exc
        if not (k1 >= 0 and 0 <= b <= 1):
            raise InvalidInputError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        if isinstance(min_length, bool) or not isinstance(min_length, int) or min_length < 1:
            raise InvalidInputError(f"min_length must be an int >= 1, got {min_length!r}")
        settings = cls(stemmer=stemmer, stopwords=stop, min_length=min_length, k1=k1, b=b)
        if stemmer is not None:
            try:
                settings.analyzer()
            except (KeyError, ValueError) as exc:
                raise InvalidInputError(f"unknown stemmer {stemmer!r}: {exc}") from exc
        return settings
