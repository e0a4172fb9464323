"""Protected spans: text that must come out byte for byte, never translated. Template
placeholders (`{{name}}`, `{0}`, printf's `%s`, `%d`, `%1$s`), URLs, e-mail addresses and
the terms a user lists (`--do-not-translate FILE`, one a line) are taken out of a sentence
before the model sees it, and put back into its translation after the word the model
translated from the word each followed (the cross-attention: `Alignment.target_word_of`).

    masked, spans = mask("Hello {{name}}, see https://x.org today.", pattern())
    protected = protect(masked, spans)    # protected.text == "Hello, see today." (what the model reads)
    protected.restore(translation, alignment.target_word_of)   # each span back, exactly as it was

Markup (`text.markup`) rides on the same mechanism: each tag of a block is a `Mark` at a MASK;
a point (an image, a comment, `<code>...</code>`) goes back like a span, and an inline
element's open and close tags go back around the target words its source words were
translated into (`text.marks`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Union

from machine_translation.text import marks as placing
from machine_translation.text.marks import TRAILING, Mark

PATTERNS = (
    r"\{\{[^{}\n]*\}\}",  # {{name}} (Mustache, Jinja, i18next)
    r"\{[A-Za-z0-9_.:\-]*\}",  # {0}, {name}, {count:d} (Python, ICU, .NET)
    r"%(?:\d+\$)?[-+#0]*\d*(?:\.\d+)?[sdifuxXeEgGc@]",  # printf: %s %d %1$s %.2f (not "50% d...")
    r"\b(?:https?|ftp)://[^\s<>\"']*[^\s<>\"'.,;:!?)\]]",  # URLs, without a final stop or bracket
    r"\bwww\.[^\s<>\"']*[^\s<>\"'.,;:!?)\]]",
    r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}",  # e-mail addresses
)
MASK = "\ue000"  # a private-use character standing for a span while a line is split into sentences


@dataclass(frozen=True)
class Span:
    text: str  # exactly as in the source
    before: str  # the whitespace that preceded it (put back with it)
    after_word: int  # it followed the source word of this index (-1: it began the sentence)
    attached: bool = False  # punctuation followed it at once ("{{name}},"): it goes before the word's punctuation
    mark: Mark | None = None  # a tag: never escaped; an inline element's tags are placed around words


@dataclass(frozen=True)
class Protected:
    text: str  # the sentence without its spans: what the model translates
    spans: tuple[Span, ...]

    def restore(self, translation: str, target_word_of: Callable[[int], int | None],
                escape: Callable[[str], str] = str) -> str:
        """`translation` with every span put back, each after the target word `target_word_of`
        gives for the source word it followed (None: the last), never before a span that
        came earlier in the source; spans that began the sentence go first. An inline
        element's tags go around the words it wraps (`marks`). `escape` is applied to the
        translation and the text spans (HTML), never to tags."""
        text = lambda span: span.text if span.mark else escape(span.text)  # noqa: E731
        words = translation.split(" ") if translation else []
        if not words:
            return "".join(span.before * (i > 0) + text(span) for i, span in enumerate(self.spans))
        last = len(words) - 1
        target = lambda w: last if (t := target_word_of(w)) is None else min(max(t, 0), last)  # noqa: E731
        wrapping = [s for s in self.spans if s.mark is not None and s.mark.kind != Mark.POINT]
        found, empty = placing.elements(wrapping, len(self.text.split()), len(words), target)
        points = [s for s in self.spans if s.mark is None or s.mark.kind == Mark.POINT]
        points += [Span(tags, "", after, mark=Mark(tags, Mark.POINT, -1)) for after, tags in empty]
        leading, placed, floor = [], {}, 0
        for span in sorted(points, key=lambda s: s.after_word):  # stable: source order among equals
            if span.after_word < 0:
                leading.append(span.before * bool(leading) + text(span))
                continue
            floor = max(floor, target(span.after_word))
            placed.setdefault(floor, []).append(span)
        extras = [[(s.before + text(s), s.attached) for s in placed.get(i, ())] for i in range(len(words))]
        out = placing.render(words, found, extras, escape)
        return " ".join(part for part in ("".join(leading), out) if part)


def pattern(terms: tuple[str, ...] = ()) -> re.Pattern:
    """The regular expression of every protected span: the listed terms (longest first, as
    whole words) and the built-in patterns."""
    listed = [rf"(?<!\w){re.escape(t)}(?!\w)" for t in sorted(set(terms), key=len, reverse=True) if t.strip()]
    return re.compile("|".join(listed + list(PATTERNS)))


def mask(line: str, found: re.Pattern | None, marks: tuple[Mark, ...] = ()) -> tuple[str, list[Union[str, Mark]]]:
    """`line` with each span replaced by MASK (so the sentence splitter never cuts inside one)
    and the spans in order; `marks`: the tags at the line's own MASKs (markup), kept in order
    among the spans found between them."""
    if not marks:
        if MASK in line or found is None:  # the line itself holds the mask character: it is left unprotected
            return line, []
        return found.sub(MASK, line), [m.group(0) for m in found.finditer(line)]
    pieces = line.split(MASK)
    masked, spans = mask(pieces[0], found)
    for mark, piece in zip(marks, pieces[1:]):
        more, found_spans = mask(piece, found)
        masked += MASK + more
        spans += [mark] + found_spans
    return masked, spans


def protect(sentence: str, spans: list[Union[str, Mark]]) -> Protected:
    """A masked sentence (each MASK one of `spans`, in order) as the text without the spans,
    and after which word each was. A span's preceding whitespace goes with it; two words a
    span joined stay two words, and one word a tag is inside stays one word."""
    if sentence.count(MASK) != len(spans):  # a mask character of the text's own (see `mask`): nothing protected
        return Protected(sentence.strip(), ())
    parts = sentence.split(MASK)
    kept, found = parts[0], []
    for span, part in zip(spans, parts[1:]):
        if isinstance(span, Mark) and span.kind != Mark.POINT:
            found.append(Span(span.raw, "", *placing.position(span, kept, part), span))
            kept += part
            continue
        before = kept[len(kept.rstrip()):]
        kept = kept.rstrip()
        text = span.raw if isinstance(span, Mark) else span
        found.append(Span(text, before, len(kept.split()) - 1, part[:1] in TRAILING and part[:1] != "",
                          span if isinstance(span, Mark) else None))
        if not kept:
            part = part.lstrip()
        elif part[:1].isalnum():
            part = (before or " ") + part
        kept += part
    return Protected(kept.strip(), tuple(found))


def unmask(text: str, spans: list[Union[str, Mark]], escape: Callable[[str], str] = str) -> str:
    """The masked `text` with its spans back (a sentence left untranslated), `escape`d but its tags."""
    if text.count(MASK) != len(spans):
        return escape(text)
    parts = text.split(MASK)
    return "".join(escape(p) + (s.raw if isinstance(s, Mark) else escape(s)) for p, s in zip(parts, spans + [""]))
