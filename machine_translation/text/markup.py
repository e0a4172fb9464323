"""HTML as people write it: each block element's text is translated as whole sentences, and
the inline tags inside it (`<b>`, `<a href=...>`, `<span>`...) go back around the words they
wrapped, by the cross-attention (`text.marks`, through `spans.Protected.restore`). Everything
that is not text (tags, attributes, comments, `<script>`/`<style>`/`<pre>`/`<code>` content, CDATA, processing
instructions, a malformed tag) is copied byte for byte from the source, and so is an element
marked `translate="no"` or `class="notranslate"`, content and all.

    document = parse('<p>A man in a <b>red</b> shirt.</p>')
    document.texts   # ['A man in a \\ue000red\\ue000 shirt.']: a block's text, MASK at each tag
    document.marks   # [[Mark('<b>', OPEN, 0), Mark('</b>', CLOSE, 0)]]
    document.render(translated_blocks)   # the page, each block replaced by its translation

The standard library's tokenizer (`html.parser`) finds the constructs and `getpos()` their
offsets; each construct's source is the slice up to the next one, so the pieces cover the
page exactly. A block's text is its text runs with entities decoded and whitespace runs made
one space (what a browser shows); the markup and whitespace before its first word and after
its last are copied as they are.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from machine_translation.text.marks import Mark
from machine_translation.text.spans import MASK

# Elements that wrap words inside a sentence: their tags go back around the translated words.
INLINE = frozenset("a abbr b bdi bdo cite data del dfn em font i ins kbd label mark q s samp small span "
                   "strong sub sup time tt u var".split())
# Inline elements kept whole, content untranslated, placed after the word they followed.
ATOMIC = frozenset({"code", "svg", "math"})
POINTS = frozenset({"img", "wbr", "input", "select", "button", "meter", "progress", "object", "embed",
                    "iframe", "video", "audio", "canvas"})
# Block elements whose content is never translated.
RAW = frozenset({"script", "style", "pre", "textarea", "template"})
SPACE = " \t\n\r\f"  # HTML's whitespace
VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())  # no end tag
# An element its author marked as not to be translated (HTML's translate="no", and the
# "notranslate" class Google's and Microsoft's translators honour): kept whole, as written.
NO_TRANSLATE = re.compile(r"""\stranslate\s*=\s*["']?no\b|\sclass\s*=\s*(["'])[^"']*\bnotranslate\b""",
                          re.IGNORECASE)


@dataclass
class Block:
    """A run of text and inline elements between two block boundaries."""

    lead: str  # markup and whitespace before the first word, as written
    text: str  # what is translated: the text, MASK at each mark
    marks: list[Mark]
    trail: str  # markup and whitespace after the last word, as written


@dataclass
class Document:
    parts: list[str | Block] = field(default_factory=list)  # markup as written, and blocks of text

    @property
    def blocks(self) -> list[Block]:
        return [p for p in self.parts if isinstance(p, Block)]

    @property
    def texts(self) -> list[str]:
        return [b.text for b in self.blocks]

    @property
    def marks(self) -> list[list[Mark]]:
        return [b.marks for b in self.blocks]

    def render(self, translations: list[str]) -> str:
        """The page with each block's text replaced by its translation (HTML, tags back in)."""
        done = iter(translations)
        return "".join(p if isinstance(p, str) else p.lead + next(done) + p.trail for p in self.parts)


def parse(markup: str) -> Document:
    """The page as markup copied as written and blocks of text to translate."""
    builder = _Builder()
    for kind, tag, raw in _constructs(markup):
        builder.add(kind, tag, raw)
    builder.end()
    return builder.document


def plain_text(markup: str) -> str:
    """What a reader of the page reads: its text without tags, entities decoded (script and
    style content left out)."""
    return "".join(html.unescape(raw) for kind, _, raw in _constructs(markup) if kind == "text")


def escape(text: str) -> str:
    """Translated text as HTML text (`<`, `>`, `&` escaped; quotes need not be)."""
    return html.escape(text, quote=False)


class _Builder:
    """Groups the page's constructs into markup and blocks (see `parse`)."""

    def __init__(self):
        self.document = Document()
        self.pieces: list[tuple[str, str, int]] = []  # the open block: (kind, raw, element)
        self.open: list[tuple[str, int]] = []  # its open inline elements: (tag, element)
        self.elements = 0
        self.kept: tuple[str, int, list[str]] | None = None  # a RAW or ATOMIC element being copied

    def add(self, kind: str, tag: str, raw: str) -> None:
        if self.kept is not None:
            self._keep(kind, tag, raw)
        elif kind == "start" and (tag in RAW or tag in ATOMIC or (tag not in VOID and NO_TRANSLATE.search(raw))):
            self.kept = (tag, 1, [raw])
        elif kind == "text":
            self.pieces.append(("text", raw, -1))
        elif kind == "start" and tag in INLINE:
            self.open.append((tag, self.elements))
            self.pieces.append((Mark.OPEN, raw, self.elements))
            self.elements += 1
        elif kind == "end" and tag in INLINE:
            match = [i for i, (t, _) in enumerate(self.open) if t == tag]
            element = self.open.pop(match[-1])[1] if match else self._new()  # a close without its open: a point
            self.pieces.append((Mark.CLOSE if match else Mark.POINT, raw, element))
        elif kind in ("start", "startend", "end") and tag not in POINTS:  # a block boundary
            self.end()
            self.document.parts.append(raw)
        else:  # a void inline element, a comment, CDATA, a declaration, a processing instruction
            self.pieces.append((Mark.POINT, raw, self._new()))

    def _new(self) -> int:
        self.elements += 1
        return self.elements - 1

    def _keep(self, kind: str, tag: str, raw: str) -> None:
        """Copy an untranslated element to its end tag (nested ones of its name counted)."""
        name, depth, raws = self.kept
        depth += (kind == "start" and tag == name) - (kind == "end" and tag == name)
        raws.append(raw)
        self.kept = (name, depth, raws)
        if depth == 0:
            self._close_kept()

    def _close_kept(self) -> None:
        name, _, raws = self.kept
        self.kept = None
        if name in RAW or (name not in INLINE and name not in ATOMIC):  # (a block marked translate="no")
            self.end()
            self.document.parts.append("".join(raws))
        else:
            self.pieces.append((Mark.POINT, "".join(raws), self._new()))

    def end(self) -> None:
        """Close the open block: its text to translate, or, without a word, its markup as written."""
        if self.kept is not None:  # the page ended inside an untranslated element
            self._close_kept()
        pieces, self.pieces, self.open = self.pieces, [], []
        words = [i for i, (kind, raw, _) in enumerate(pieces) if kind == "text" and html.unescape(raw).strip()]
        if not words:
            if pieces:
                self.document.parts.append("".join(raw for _, raw, _ in pieces))
            return
        # the block's text runs from its first word or inline tag to its last (points and
        # whitespace around them stay as written)
        inside = [i for i, (kind, _, _) in enumerate(pieces) if kind in (Mark.OPEN, Mark.CLOSE) or i in words]
        first, last = inside[0], inside[-1]
        middle = [list(piece) for piece in pieces[first : last + 1]]
        lead_space = trail_space = ""
        if middle[0][0] == "text":
            lead_space, middle[0][1] = _split_lead(middle[0][1])
        if middle[-1][0] == "text":
            middle[-1][1], trail_space = _split_trail(middle[-1][1])
        text, marks = "", []
        for kind, raw, element in middle:
            if kind == "text":
                text += _collapse(html.unescape(raw))
            else:
                text += MASK
                marks.append(Mark(raw, kind, element))
        lead = "".join(raw for _, raw, _ in pieces[:first]) + lead_space
        trail = trail_space + "".join(raw for _, raw, _ in pieces[last + 1 :])
        self.document.parts.append(Block(lead, re.sub(" {2,}", " ", text), marks, trail))


def _collapse(text: str) -> str:
    """Runs of HTML whitespace as one space (an edge's space kept), as a browser shows them
    (a no-break space is text)."""
    inner = " ".join(part for part in re.split(f"[{SPACE}]+", text) if part)
    if not inner:
        return " " if text else ""
    return (" " if text[0] in SPACE else "") + inner + (" " if text[-1] in SPACE else "")


def _split_lead(raw: str) -> tuple[str, str]:
    """A text run's source as (its leading whitespace, the rest); `_split_trail`: (the rest,
    its trailing whitespace)."""
    rest = raw.lstrip(SPACE)
    return raw[: len(raw) - len(rest)], rest


def _split_trail(raw: str) -> tuple[str, str]:
    rest = raw.rstrip(SPACE)
    return rest, raw[len(rest):]


class _Tokenizer(HTMLParser):
    """Each construct's kind, tag and start offset (`getpos` at its handler)."""

    def __init__(self, markup: str):
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str, int]] = []
        self.line_starts = [0] + [i + 1 for i, c in enumerate(markup) if c == "\n"]

    def _at(self, kind: str, tag: str = "") -> None:
        line, column = self.getpos()
        self.found.append((kind, tag, self.line_starts[line - 1] + column))

    def handle_starttag(self, tag, attrs):
        self._at("start", tag)

    def handle_startendtag(self, tag, attrs):
        self._at("startend", tag)

    def handle_endtag(self, tag):
        self._at("end", tag)

    def handle_data(self, data):
        self._at("raw" if self.cdata_elem else "text")

    def handle_comment(self, data):
        self._at("other")

    handle_decl = handle_pi = unknown_decl = handle_comment


def _constructs(markup: str):
    """(kind, tag, source) of each construct, covering `markup` exactly. A text run's source
    ends at a `<` the tokenizer passed over without a construct (such as `</>`): the rest is
    markup of its own; so is a tag the page ends inside (`<p class=`)."""
    unfinished = re.search(r"<[A-Za-z/!?][^>]*\Z", markup)
    if unfinished:
        yield from _constructs(markup[: unfinished.start()])
        yield "other", "", unfinished.group(0)
        return
    tokenizer = _Tokenizer(markup)
    tokenizer.feed(markup)
    tokenizer.close()
    found = tokenizer.found
    if not found or found[0][2] > 0:
        found.insert(0, ("other", "", 0))
    for (kind, tag, start), (_, _, end) in zip(found, found[1:] + [("", "", len(markup))]):
        raw = markup[start:end]
        if not raw:
            continue
        cut = raw.find("<", 1) if kind == "text" else -1
        if cut > 0:
            yield kind, tag, raw[:cut]
            yield "other", "", raw[cut:]
        else:
            yield kind, tag, raw
