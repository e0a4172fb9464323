"""Sentences of a line as people write it: split for the model, which learned one sentence a
line, and joined again around the original whitespace, so a paragraph comes back as a
paragraph and `mt translate` keeps one output line per input line.

The splitting rules are pysbd's (22 languages; English rules elsewhere), which ship in its
wheel and download nothing. Compared on the cases of tests/test_text.py (abbreviations,
decimals, quotes, ellipses, "?!", French guillemets and the space French puts before ! ? ;):
pysbd split 17 of 18 right (its miss, a URL's dots, never reaches it: protected spans are
masked first), sentencex 16 (it splits after French "M." and list numbers), spaCy's
rule-based sentencizer 14, and spaCy took 3.6 s to load (docs/benchmarks.md, Text pipeline).

A sentence longer than the model can read is split further at its best boundary (`;` `:`
`,`, then a space) by `fit`, never truncated.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

CLAUSE_MARKS = (";", ":", ",", "、", "，", "；")  # the boundaries a too-long sentence is cut at first
# Every character after which pysbd may end a sentence, in any of its languages (list items
# such as "a) ... b) ..." included). A line with none of them but as its last character is
# one sentence, and is not given to pysbd (~0.5 ms a line, a quarter of the server's work per
# single-sentence request); tests/test_text.py holds this equal to pysbd's answer.
BOUNDARIES = ".!?…;:)\n\r\u2028\u2029\u037e。！？．｡։।॥။።፧؟۔"


@dataclass(frozen=True)
class Layout:
    """A line as sentences and the text around them: line == gaps[0] + sentences[0] + gaps[1]
    + ... + sentences[-1] + gaps[-1] (len(gaps) == len(sentences) + 1)."""

    sentences: list[str]
    gaps: list[str]

    def join(self, translations: list[str]) -> str:
        """The line with each sentence replaced by its translation, the gaps kept byte for byte."""
        parts = [self.gaps[0]]
        for sentence, gap in zip(translations, self.gaps[1:]):
            parts += [sentence, gap]
        return "".join(parts)


@functools.cache
def _segmenter(language: str):
    import pysbd
    from pysbd.languages import LANGUAGE_CODES
    return pysbd.Segmenter(language=language if language in LANGUAGE_CODES else "en", clean=False)


def split(line: str, language: str = "en") -> Layout:
    """The sentences of `line` (rules of `language`, an ISO 639-1 code) and the whitespace
    around them. A line without text is all gap."""
    if not any(c in BOUNDARIES for c in line.strip()[:-1]):  # a boundary, if any, only as the last character
        return whole(line)  # (a line without text too: all gap)
    return by_rules(line, language)


def by_rules(line: str, language: str = "en") -> Layout:
    """`split` by pysbd's rules alone (what `split` gives, without its one-sentence shortcut)."""
    sentences, gaps, position = [], [], 0
    for segment in _segmenter(language).segment(line):
        text = segment.strip()
        if not text:
            continue
        start = line.find(text, position)
        if start < 0:  # pysbd changed the text (it should not with clean=False): keep the line whole
            return whole(line)
        gaps.append(line[position:start])
        sentences.append(text)
        position = start + len(text)
    gaps.append(line[position:])
    return Layout(sentences, gaps)


def whole(line: str) -> Layout:
    """A line as one sentence (splitting off): only its outer whitespace is kept aside."""
    text = line.strip()
    if not text:
        return Layout([], [line])
    return Layout([text], [line[: len(line) - len(line.lstrip())], line[len(line.rstrip()):]])


def fit(sentence: str, fits: Callable[[str], bool]) -> Layout:
    """`sentence` as pieces that each `fits` (the model's positions): cut at the last clause
    mark that leaves a fitting head, else the last space, else between characters; never
    dropping a character."""
    if fits(sentence) or len(sentence) < 2:
        return Layout([sentence], ["", ""])
    cut = _best_cut(sentence, fits)
    head, rest = sentence[:cut], sentence[cut:]
    tail = fit(rest.lstrip(), fits)
    return Layout([head.rstrip(), *tail.sentences],
                  ["", head[len(head.rstrip()):] + rest[: len(rest) - len(rest.lstrip())] + tail.gaps[0],
                   *tail.gaps[1:]])


def _best_cut(sentence: str, fits: Callable[[str], bool]) -> int:
    """Where to cut: just after the last clause mark, or at the last space, whose head fits."""
    for marks in (CLAUSE_MARKS, (" ",)):
        cuts = [i + 1 for i, c in enumerate(sentence[:-1]) if c in marks]
        for cut in reversed(cuts):
            if sentence[:cut].strip() and fits(sentence[:cut]):
                return cut
    low, high = 1, len(sentence) - 1  # no boundary fits: the longest head that does (at least one character)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(sentence[:middle]) else (low, middle - 1)
    return low
