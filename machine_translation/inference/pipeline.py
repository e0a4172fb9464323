"""The text pipeline between what people write and what the model reads, used by the
`Translator`, `mt translate` and `mt serve` alike:

    prepared = prepare(texts, TextOptions(), "en", fits)      # lines -> sentences, spans out
    translations = <the model's 1-best of prepared.sentences>  # one batch for every text
    texts_out = finish(prepared, translations, align)          # spans back, sentences joined

Each text is split at its newlines, each line into sentences (`text.sentences`), each sentence
too long for the model cut at its best boundary (`sentences.fit`); protected spans are taken
out before the splitting and put back after the word the model translated from the word each
followed, by the cross-attention (`Alignment.target_word_of`). Whitespace between sentences,
blank lines and indentation come back byte for byte, except characters that end a line for
some readers (`LINE_BREAKS`: \r, form feed, U+2028...), which come back as spaces.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from machine_translation.base.options import TextOptions
from machine_translation.text import markup
from machine_translation.text import sentences as sentence_rules
from machine_translation.text.markup import Document
from machine_translation.text.sentences import Layout
from machine_translation.text.marks import Mark
from machine_translation.text.spans import MASK, Protected, mask, pattern, protect, unmask


# Characters that end a line for some readers (str.splitlines) though not for mt, which splits
# input at \n only: between sentences they come back as spaces, so one line in stays one line out.
LINE_BREAKS = str.maketrans({c: " " for c in "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


@dataclass
class Prepared:
    """What `prepare` made of some texts: per text, per line, a layout of pieces, and the
    protected sentences the model translates (`sentences`, in order)."""

    lines: list[list[Layout]]  # per text, its lines
    protected: list[Protected]  # every sentence of every line, in order
    masked: list[tuple[str, list]]  # each sentence masked and its spans, for a sentence left as it is
    documents: list[Document] | None = None  # format=html: the pages, whose blocks are the texts

    @property
    def sentences(self) -> list[str]:
        """What the model translates: each sentence without its spans."""
        return [p.text for p in self.protected]

    @property
    def aligns(self) -> bool:
        """Whether `finish` will ask for alignments (some sentence has spans to put back)."""
        return any(p.spans and p.text for p in self.protected)

    def to_align(self, translations: list) -> list:
        """The translations (of `sentences`, in order) whose alignments `finish` will ask for:
        to compute them in batches beforehand."""
        return [t for p, t in zip(self.protected, translations) if p.spans and p.text]


def prepare(texts: list[str], options: TextOptions, language: str, fits: Callable[[str], bool]) -> Prepared:
    """Split `texts` into the sentences the model translates (see the module's docstring);
    with `options.format == "html"`, the text of each block of each page (`text.markup`)."""
    if options.format != "html":
        return _prepare(texts, options, language, fits)
    documents = [markup.parse(text) for text in texts]
    blocks = [block for document in documents for block in document.blocks]
    prepared = _prepare([b.text for b in blocks], options, language, fits, [b.marks for b in blocks])
    prepared.documents = documents
    return prepared


def _prepare(texts: list[str], options: TextOptions, language: str, fits: Callable[[str], bool],
             marks: list[list[Mark]] | None = None) -> Prepared:
    """`prepare` of plain texts; `marks`: markup's tags, one for each MASK of each text."""
    found = pattern(options.terms) if options.protect else None
    lines, protected, as_written = [], [], []
    for k, text in enumerate(texts):
        layouts, tags = [], list(marks[k]) if marks else []
        for line in text.split("\n"):
            count = line.count(MASK) if tags else 0
            masked, spans = mask(line, found, tuple(tags[:count]))
            tags = tags[count:]
            layout = sentence_rules.split(masked, language) if options.split_sentences else sentence_rules.whole(masked)
            pieces, gaps = [], [layout.gaps[0]]
            for sentence, gap in zip(layout.sentences, layout.gaps[1:]):
                part = sentence_rules.fit(sentence, lambda s: fits(protect(s, [""] * s.count(MASK)).text))
                pieces += part.sentences
                gaps[-1] += part.gaps[0]
                gaps += part.gaps[1:-1] + [part.gaps[-1] + gap]
            pieces, gaps = _spans_stay(pieces, gaps)
            for piece in pieces:
                count = piece.count(MASK)
                protected.append(protect(piece, spans[:count]))
                as_written.append((piece, spans[:count]))
                spans = spans[count:]
            layouts.append(Layout(pieces, gaps))
        lines.append(layouts)
    return Prepared(lines, protected, as_written)


def _spans_stay(pieces: list[str], gaps: list[str]) -> tuple[list[str], list[str]]:
    """A piece of nothing but spans (a closing tag after "bicycle.", which the splitter may
    set apart) joins the sentence before it, with the gap between (`pieces`, `gaps` as in
    `Layout`)."""
    out, out_gaps = [], gaps[:1]
    for piece, gap in zip(pieces, gaps[1:]):
        if out and not piece.replace(MASK, "").strip():
            out[-1] += out_gaps[-1] + piece
            out_gaps[-1] = gap
        else:
            out.append(piece)
            out_gaps.append(gap)
    return out, out_gaps


def finish(prepared: Prepared, translations: list, align: Callable) -> list[str]:
    """The translated texts: `translations` (the 1-best `Translation` of each of
    `prepared.sentences`) with their spans put back (`align(translation)` gives the target
    word of each source word, asked only for sentences that had spans) and joined as the
    texts were (pages: rendered with their markup)."""
    if prepared.documents is None:
        return _finish(prepared, translations, align, str)
    done = iter(_finish(prepared, translations, align, markup.escape))
    return [document.render([next(done) for _ in document.blocks]) for document in prepared.documents]


def _finish(prepared: Prepared, translations: list, align: Callable, escape: Callable[[str], str]) -> list[str]:
    """`finish` of plain texts, `escape` applied to all but tags."""
    done = iter(zip(prepared.protected, prepared.masked, translations))
    texts = []
    for layouts in prepared.lines:
        out_lines = []
        for layout in layouts:
            out = []
            for protected, (piece, spans), translation in (next(done) for _ in layout.sentences):
                if not protected.text:
                    out.append(unmask(piece, spans, escape))  # nothing but spans: nothing to translate
                elif protected.spans:
                    out.append(protected.restore(translation.text, align(translation), escape))
                else:
                    out.append(escape(translation.text))
            out_lines.append(Layout(layout.sentences, [g.translate(LINE_BREAKS) for g in layout.gaps]).join(out))
        texts.append("\n".join(out_lines))
    return texts
