"""Documents as people keep them: a file becomes the texts to translate and a way to write
the translated file back with its structure, for `mt translate --input FILE --output FILE`
and the server's `/translate_file`.

    document = load("talk.srt", data)            # by the file's extension
    translations = <document.texts translated, as document.format ("text" or "html")>
    data = document.build(translations)          # the same cues, numbers and timings

- `.txt`: one text a line (line-aligned); `paragraphs=True`: blank-line-separated paragraphs,
  each translated whole and wrapped again to its own width.
- `.srt` (`srt`) and `.vtt` (`webvtt-py`, which keeps the header, STYLE, REGION and NOTE
  blocks, cue identifiers and settings): each cue's lines translated as one text (its
  `<i>`/`<b>`/`<v Bob>` tags kept as markup), wrapped again at 42 characters a line when it
  held no tag; cue count, numbering and timings are kept.
- `.html`/`.htm`: the page (`text.markup`).
- `.docx` (`python-docx`): every paragraph of the body, tables, headers and footers is
  translated whole and its runs keep their formatting: each run is an inline element, so its
  translated words go back into it by the cross-attention; the run count never changes.

Compared with `argos-translate-files` (LibreTranslate's): its srt is the same idea (cue lines
joined, wrapped at 40); its txt translates the whole file as one text (here lines stay lines);
its docx translates the XML's text nodes by Argos's tag heuristics (here runs are placed by
the alignment). Its odt, odp, pptx, epub and pdf are not taken.
"""
from __future__ import annotations

import html
import io
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from machine_translation.base.errors import ConfigError
from machine_translation.text.markup import _constructs, plain_text

SUBTITLE_WIDTH = 42  # characters a subtitle line, the common broadcast limit


@dataclass
class Document:
    texts: list[str]  # what is translated, in order
    format: str  # "text" or "html": how each text is translated
    build: Callable[[list[str]], bytes]  # the translated file, from the translations of `texts`

    @property
    def plain(self) -> list[str]:
        """The texts as a reader sees them (HTML: without tags, entities decoded)."""
        if self.format == "text":
            return self.texts
        return [plain_text(t) for t in self.texts]

    @property
    def characters(self) -> int:
        """The characters to translate (what `--char-limit` counts)."""
        return sum(len(t) for t in self.plain)


def supported() -> tuple[str, ...]:
    return tuple(READERS)


def load(name: str, data: bytes, paragraphs: bool = False) -> Document:
    """The document `data` (a file named `name`) by its extension."""
    suffix = Path(name).suffix.lower()
    if suffix not in READERS:
        raise ConfigError(f"{name}: {'.' + suffix.lstrip('.') if suffix else 'a file without an extension'} is "
                          f"not a document mt translates: use one of {', '.join(READERS)}")
    if suffix == ".docx":
        return _docx(name, data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{name}: not UTF-8 text (byte {e.start}): save it as UTF-8") from None
    return READERS[suffix](name, text, paragraphs)


def _txt(name: str, text: str, paragraphs: bool) -> Document:
    ending = "\n" if text.endswith("\n") else ""
    body = text[: len(text) - len(ending)].replace("\r\n", "\n")
    if not paragraphs:
        return Document(body.split("\n") if body else [], "text", lambda out: ("\n".join(out) + ending).encode())
    parts = re.split(r"(\n[ \t]*\n\s*)", body)  # paragraphs and, between them, their blank lines
    paras = parts[::2]
    widths = [max(map(len, p.split("\n"))) if "\n" in p.strip() else 0 for p in paras]

    def build(out: list[str]) -> bytes:
        wrapped = [textwrap.fill(t, w) if w and len(t) > w else t for t, w in zip(out, widths)]
        return ("".join(w + gap for w, gap in zip(wrapped, parts[1::2] + [""])) + ending).encode()

    return Document([" ".join(p.split()) for p in paras], "text", build)


def _srt(name: str, text: str, paragraphs: bool) -> Document:
    import srt
    try:
        cues = list(srt.parse(text))
    except srt.SRTParseError as e:
        raise ConfigError(f"{name}: not a valid SubRip file ({e})") from None

    def build(out: list[str]) -> bytes:
        for cue, translated in zip(cues, out):
            cue.content = _cue_text(translated, cue.content)
        return srt.compose(cues, reindex=False).encode()

    return Document([_cue_markup(c.content) for c in cues], "html", build)


def _vtt(name: str, text: str, paragraphs: bool) -> Document:
    import webvtt
    from webvtt.errors import MalformedFileError
    try:
        vtt = webvtt.from_string(text)
    except MalformedFileError as e:
        raise ConfigError(f"{name}: not a valid WebVTT file ({e})") from None
    cues = vtt.captions

    def build(out: list[str]) -> bytes:
        for cue, translated in zip(cues, out):
            cue.text = _cue_text(translated, cue.raw_text)
        return vtt.content.encode()

    return Document([_cue_markup(c.raw_text) for c in cues], "html", build)


def _cue_markup(cue: str) -> str:
    """A cue's text as HTML (its text escaped, its tags as they are), lines joined."""
    return "".join(html.escape(raw, quote=False) if kind == "text" else raw for kind, _, raw in _constructs(cue))


def _cue_text(translated: str, source: str) -> str:
    """A translated cue (HTML) as cue text again, wrapped at SUBTITLE_WIDTH when it holds no tag."""
    text = "".join(html.unescape(raw) if kind == "text" else raw for kind, _, raw in _constructs(translated))
    if "<" in source or len(text) <= SUBTITLE_WIDTH:
        return text
    return textwrap.fill(text, SUBTITLE_WIDTH)


def _html(name: str, text: str, paragraphs: bool) -> Document:
    return Document([text], "html", lambda out: out[0].encode())


def _docx(name: str, data: bytes) -> Document:
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, OSError, SyntaxError) as e:
        raise ConfigError(f"{name}: not a Word .docx file ({e})") from None
    runs = [[r for r in _runs(p) if r.text] for p in _paragraphs(document) if p.text.strip()]  # a run without
    # text (a picture, a tab alone) is left as it is

    def build(out: list[str]) -> bytes:
        for its_runs, translated in zip(runs, out):
            for run, text in zip(its_runs, _run_texts(translated, len(its_runs))):
                run.text = text
        buffer = io.BytesIO()
        document.save(buffer)
        return buffer.getvalue()

    texts = ["".join(f'<span data-run="{i}">{html.escape(r.text, quote=False)}</span>' for i, r in enumerate(rs))
             for rs in runs]
    return Document(texts, "html", build)


def _paragraphs(document):
    """Every paragraph of the body, its tables (nested ones too), headers and footers."""
    def walk(container):
        yield from container.paragraphs
        for table in getattr(container, "tables", ()):
            for row in table.rows:
                for cell in row.cells:
                    yield from walk(cell)

    yield from walk(document)
    for section in document.sections:
        for part in (section.header, section.footer):
            if not part.is_linked_to_previous:
                yield from walk(part)


def _runs(paragraph) -> list:
    """A paragraph's runs in order, those inside hyperlinks included."""
    runs = []
    for item in paragraph.iter_inner_content():
        runs += item.runs if hasattr(item, "runs") else [item]
    return runs


def _run_texts(translated: str, count: int) -> list[str]:
    """The text of each of `count` runs in a translated paragraph (`_runs_of` its pieces)."""
    pieces, current, stack = [], 0, []
    for kind, tag, raw in _constructs(translated):
        if kind == "start" and tag == "span":
            found = re.search(r'data-run="(\d+)"', raw)
            stack.append(current)
            current = min(int(found.group(1)), count - 1) if found else current
        elif kind == "end" and tag == "span":
            current = stack.pop() if stack else current
        elif kind == "text":
            pieces.append((current, html.unescape(raw)))
    texts = [""] * count
    for (_, text), run in zip(pieces, _runs_of(pieces, count)):
        texts[run] += text
    return texts


LOST = 10**9  # the cost of a run that loses every piece the alignment gave it


def _runs_of(pieces: list[tuple[int, str]], count: int) -> list[int]:
    """The run of each (run the alignment chose, text) piece of a translated paragraph, in
    order. A paragraph's runs are in a fixed order and the translation may have moved words:
    each piece goes to a run, never to one before the previous piece's, so that first the
    fewest runs lose all the text the alignment gave them (a bold word stays bold), then the
    fewest characters land elsewhere than chosen. A dynamic programme over pieces, runs and
    whether the current run has had a piece of its own."""
    has = [False] * count
    for run, _ in pieces:
        has[run] = True
    states = {(-1, True): (0, [])}  # (current run, it had a piece of its own) -> (cost, runs so far)
    for chosen, text in pieces:
        updated = {}
        for (run, own), (cost, runs) in states.items():
            for to in range(max(run, 0), count):
                step = cost + len(text) * (to != chosen)
                if to != run:  # leaving `run`, passing over the runs between
                    step += LOST * ((run >= 0 and has[run] and not own) + sum(has[run + 1 : to]))
                key = (to, (own and to == run) or to == chosen)
                if key not in updated or step < updated[key][0]:
                    updated[key] = (step, runs + [to])
        states = updated
    ending = {key: cost + LOST * ((has[key[0]] and not key[1]) + sum(has[key[0] + 1 :]))
              for key, (cost, _) in states.items()}
    return states[min(ending, key=ending.get)][1] if pieces else []


READERS = {".txt": _txt, ".srt": _srt, ".vtt": _vtt, ".html": _html, ".htm": _html, ".docx": _docx}
