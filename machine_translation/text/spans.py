"""Protected spans: text that must come out byte for byte, never translated. Template
placeholders (`{{name}}`, `{0}`, printf's `%s`, `%d`, `%1$s`), URLs, e-mail addresses and
the terms a user lists (`--do-not-translate FILE`, one a line) are taken out of a sentence
before the model sees it, and put back into its translation after the word the model
translated from the word each followed (the cross-attention: `Alignment.target_word_of`).

    masked, spans = mask("Hello {{name}}, see https://x.org today.", pattern())
    protected = protect(masked, spans)    # protected.text == "Hello, see today." (what the model reads)
    protected.restore(translation, alignment.target_word_of)   # each span back, exactly as it was
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

PATTERNS = (
    r"\{\{[^{}\n]*\}\}",  # {{name}} (Mustache, Jinja, i18next)
    r"\{[A-Za-z0-9_.:\-]*\}",  # {0}, {name}, {count:d} (Python, ICU, .NET)
    r"%(?:\d+\$)?[-+#0]*\d*(?:\.\d+)?[sdifuxXeEgGc@]",  # printf: %s %d %1$s %.2f (not "50% d...")
    r"\b(?:https?|ftp)://[^\s<>\"']*[^\s<>\"'.,;:!?)\]]",  # URLs, without a final stop or bracket
    r"\bwww\.[^\s<>\"']*[^\s<>\"'.,;:!?)\]]",
    r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}",  # e-mail addresses
)
TRAILING = ".,;:!?)]}»\"'"  # punctuation a word may end with
MASK = "\ue000"  # a private-use character standing for a span while a line is split into sentences


@dataclass(frozen=True)
class Span:
    text: str  # exactly as in the source
    before: str  # the whitespace that preceded it (put back with it)
    after_word: int  # it followed the source word of this index (-1: it began the sentence)
    attached: bool = False  # punctuation followed it at once ("{{name}},"): it goes before the word's punctuation


@dataclass(frozen=True)
class Protected:
    text: str  # the sentence without its spans: what the model translates
    spans: tuple[Span, ...]

    def restore(self, translation: str, target_word_of: Callable[[int], int | None]) -> str:
        """`translation` with every span put back, each after the target word `target_word_of`
        gives for the source word it followed (None: the last), never before a span that
        came earlier in the source; spans that began the sentence go first."""
        words = translation.split(" ") if translation else []
        leading, placed, floor = [], {}, 0
        for span in self.spans:
            if span.after_word < 0 or not words:
                leading.append(span.text)
                continue
            target = target_word_of(span.after_word)
            floor = max(floor, len(words) - 1 if target is None else min(max(target, 0), len(words) - 1))
            placed.setdefault(floor, []).append(span)
        out = [_insert(word, placed.get(i, ())) for i, word in enumerate(words)]
        return " ".join(part for part in (" ".join(leading), " ".join(out)) if part)


def _insert(word: str, spans) -> str:
    """`word` with `spans` after it, or, for spans punctuation followed in the source, between
    the word and its own trailing punctuation ("Bonjour," -> "Bonjour {{name}},")."""
    core = word.rstrip(TRAILING)
    return (core + "".join(s.before + s.text for s in spans if s.attached) + word[len(core):]
            + "".join(s.before + s.text for s in spans if not s.attached))


def pattern(terms: tuple[str, ...] = ()) -> re.Pattern:
    """The regular expression of every protected span: the listed terms (longest first, as
    whole words) and the built-in patterns."""
    listed = [rf"(?<!\w){re.escape(t)}(?!\w)" for t in sorted(set(terms), key=len, reverse=True) if t.strip()]
    return re.compile("|".join(listed + list(PATTERNS)))


def mask(line: str, found: re.Pattern) -> tuple[str, list[str]]:
    """`line` with each span replaced by MASK (so the sentence splitter never cuts inside one)
    and the spans in order."""
    if MASK in line:  # the line itself holds the mask character: it is left unprotected
        return line, []
    spans = [m.group(0) for m in found.finditer(line)]
    return found.sub(MASK, line), spans


def protect(sentence: str, spans: list[str]) -> Protected:
    """A masked sentence (each MASK one of `spans`, in order) as the text without the spans,
    and after which word each was. A span's preceding whitespace goes with it; two words a
    span joined stay two words."""
    if sentence.count(MASK) != len(spans):  # a mask character of the text's own (see `mask`): nothing protected
        return Protected(sentence.strip(), ())
    parts = sentence.split(MASK)
    kept, found = parts[0], []
    for span, part in zip(spans, parts[1:]):
        before = kept[len(kept.rstrip()):]
        kept = kept.rstrip()
        found.append(Span(span, before, len(kept.split()) - 1, part[:1] in TRAILING and part[:1] != ""))
        if not kept:
            part = part.lstrip()
        elif part[:1].isalnum():
            part = (before or " ") + part
        kept += part
    return Protected(kept.strip(), tuple(found))


def unmask(text: str, spans: list[str]) -> str:
    """The masked `text` with its spans back (a sentence left untranslated)."""
    if text.count(MASK) != len(spans):
        return text
    parts = text.split(MASK)
    return "".join(p + s for p, s in zip(parts, spans + [""]))
