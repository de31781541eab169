"""The analyzer: one tokenization for documents and queries, safe for any user text."""

from __future__ import annotations

import pytest
import Stemmer

from vectorstore.errors import InvalidInputError
from vectorstore.keyword import Analyzer
from vectorstore.keyword.analyzer import LUCENE_STOPWORDS
from vectorstore.keyword.settings import KeywordSettings


def test_folds_case_and_diacritics_drops_stop_words_and_stems():
    a = Analyzer()
    assert a.terms("The Running CAFÉS of Zürich are naïve") == ["run", "cafe", "zurich", "naiv"]
    assert a.terms("x-ray_machine") == ["x", "rai", "machin"]  # hyphen and underscore split words


@pytest.mark.parametrize(
    "text",
    [
        '"cat" NEAR(dog mouse, 2) AND NOT bird* OR -fish: (x) ^y {z}',
        "!!! ??? ... ---",
        "",
        "   ",
        "🐈 cat 🐕",
        "a" * 10_000,
        "word " * 2_000,
        "\x00\x01 cat \u200b",
    ],
)
def test_hostile_text_never_raises_and_keeps_only_its_words(text):
    terms = Analyzer().terms(text)
    assert all(t and t.isalnum() for t in terms)
    # the same as splitting, dropping stop words and stemming by hand: no word is read as an operator
    words = Analyzer(stemmer=None, stopwords=frozenset()).terms(text)
    stemmer = Stemmer.Stemmer("porter")
    assert terms == stemmer.stemWords([w for w in words if w not in LUCENE_STOPWORDS])


def test_operators_are_plain_words():
    a = Analyzer(stopwords=frozenset())
    assert a.terms("cat NEAR dog") == ["cat", "near", "dog"]
    assert a.terms("NOT cat") == ["not", "cat"]
    assert Analyzer().terms("NOT cat") == ["cat"]  # "not" is a Lucene stop word


def test_no_stemmer_and_custom_stop_words():
    a = KeywordSettings.from_dict({"stemmer": None, "stopwords": ["cats"]}).analyzer()
    assert a.terms("Cats chasing dogs") == ["chasing", "dogs"]


@pytest.mark.parametrize(
    "options",
    [
        {"stemmer": "klingon"},
        {"stopwords": "french"},
        {"stopwords": [1, 2]},
        {"k1": -1},
        {"b": 2},
        {"min_length": 0},
        {"colour": "blue"},
        "porter",
    ],
)
def test_bad_keyword_options_raise_a_clear_error(options):
    with pytest.raises(InvalidInputError):
        KeywordSettings.from_dict(options)  # type: ignore[arg-type]


def test_settings_round_trip_through_json():
    s = KeywordSettings.from_dict({"stemmer": "english", "stopwords": ["b", "a"], "k1": 0.9, "b": 0.4})
    assert KeywordSettings.from_dict(s.to_dict()) == s
