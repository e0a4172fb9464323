"""`format=html`: translate the text between the tags and keep the tags as they are.

The page is cut into tags and text runs with the standard library's HTML tokenizer; each
text run that holds words (outside <script>, <style>, <code> and <pre>) is translated as one
sentence, its leading and trailing spaces kept, and written back escaped.
"""
from __future__ import annotations

import html
from html.parser import HTMLParser

KEEP_AS_IS = {"script", "style", "code", "pre"}


class _Splitter(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[tuple[bool, str]] = []  # (is text to translate, markup or text)
        self._keep: list[str] = []  # the open elements whose text stays as it is

    def handle_starttag(self, tag, attrs):
        self.parts.append((False, self.get_starttag_text() or f"<{tag}>"))
        if tag in KEEP_AS_IS:
            self._keep.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.parts.append((False, self.get_starttag_text() or f"<{tag}/>"))

    def handle_endtag(self, tag):
        self.parts.append((False, f"</{tag}>"))
        if tag in self._keep:
            del self._keep[len(self._keep) - 1 - self._keep[::-1].index(tag)]

    def handle_data(self, data):
        if not self._keep:  # text (entities decoded): translated if it has words
            self.parts.append((bool(data.strip()), data if data.strip() else html.escape(data, False)))
        elif self._keep[-1] in ("script", "style"):  # raw content: the parser gives it as written
            self.parts.append((False, data))
        else:
            self.parts.append((False, html.escape(data, False)))

    def handle_comment(self, data):
        self.parts.append((False, f"<!--{data}-->"))

    def handle_decl(self, decl):
        self.parts.append((False, f"<!{decl}>"))


def split(markup: str) -> list[tuple[bool, str]]:
    """The page as (translate?, piece) parts: tags and blank runs kept, text runs unescaped."""
    splitter = _Splitter()
    splitter.feed(markup)
    splitter.close()
    return splitter.parts


def join(parts: list[tuple[bool, str]], translations: list[str]) -> str:
    """Put the translations of the text parts back between the tags, in order."""
    out, it = [], iter(translations)
    for is_text, piece in parts:
        if not is_text:
            out.append(piece)
            continue
        lead = piece[: len(piece) - len(piece.lstrip())]
        trail = piece[len(piece.rstrip()):]
        out.append(lead + html.escape(next(it), quote=False) + trail)
    return "".join(out)


def texts(parts: list[tuple[bool, str]]) -> list[str]:
    """The text runs to translate, as sentences (spaces inside a run collapsed)."""
    return [" ".join(piece.split()) for is_text, piece in parts if is_text]
