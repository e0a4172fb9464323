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
from machine_translation.text import sentences as sentence_rules
from machine_translation.text.sentences import Layout
from machine_translation.text.spans import Protected, mask, pattern, protect, unmask


# Characters that end a line for some readers (str.splitlines) though not for mt, which splits
# input at \n only: between sentences they come back as spaces, so one line in stays one line out.
LINE_BREAKS = str.maketrans({c: " " for c in "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


@dataclass
class Prepared:
    """What `prepare` made of some texts: per text, per line, a layout of pieces, and the
    protected sentences the model translates (`sentences`, in order)."""

    lines: list[list[Layout]]  # per text, its lines
    protected: list[Protected]  # every sentence of every line, in order
    originals: list[str]  # each sentence as written (spans in), for a sentence left as it is

    @property
    def sentences(self) -> list[str]:
        """What the model translates: each sentence without its spans."""
        return [p.text for p in self.protected]

    @property
    def aligns(self) -> bool:
        """Whether `finish` will ask for alignments (some sentence has spans to put back)."""
        return any(p.spans and p.text for p in self.protected)


def prepare(texts: list[str], options: TextOptions, language: str, fits: Callable[[str], bool]) -> Prepared:
    """Split `texts` into the sentences the model translates (see the module's docstring)."""
    found = pattern(options.terms) if options.protect else None
    lines, protected, originals = [], [], []
    for text in texts:
        layouts = []
        for line in text.split("\n"):
            masked, spans = mask(line, found) if found is not None else (line, [])
            layout = sentence_rules.split(masked, language) if options.split_sentences else sentence_rules.whole(masked)
            pieces, gaps = [], [layout.gaps[0]]
            for sentence, gap in zip(layout.sentences, layout.gaps[1:]):
                part = sentence_rules.fit(sentence, lambda s: fits(protect(s, [""] * s.count("\ue000")).text))
                pieces += part.sentences
                gaps[-1] += part.gaps[0]
                gaps += part.gaps[1:-1] + [part.gaps[-1] + gap]
            for piece in pieces:
                count = piece.count("\ue000")
                protected.append(protect(piece, spans[:count]))
                originals.append(unmask(piece, spans[:count]))
                spans = spans[count:]
            layouts.append(Layout(pieces, gaps))
        lines.append(layouts)
    return Prepared(lines, protected, originals)


def finish(prepared: Prepared, translations: list, align: Callable) -> list[str]:
    """The translated texts: `translations` (the 1-best `Translation` of each of
    `prepared.sentences`) with their spans put back (`align(translation)` gives the target
    word of each source word, asked only for sentences that had spans) and joined as the
    texts were."""
    done = iter(zip(prepared.protected, prepared.originals, translations))
    texts = []
    for layouts in prepared.lines:
        out_lines = []
        for layout in layouts:
            out = []
            for protected, original, translation in (next(done) for _ in layout.sentences):
                if not protected.text:
                    out.append(original)  # nothing but spans: nothing to translate
                elif protected.spans:
                    out.append(protected.restore(translation.text, align(translation)))
                else:
                    out.append(translation.text)
            out_lines.append(Layout(layout.sentences, [g.translate(LINE_BREAKS) for g in layout.gaps]).join(out))
        texts.append("\n".join(out_lines))
    return texts
