"""Where an inline element's tags go in a translation (`text.markup`'s blocks).

Each element's tags wrap the source words between them; in the translation they wrap the
target words those source words were translated into (lowest to highest, by
`Alignment.target_word_of`), so `<b>red</b> shirt` becomes `T-shirt <b>rouge</b>`. The tags
come out well nested whatever the alignment says: when two elements' target words cross,
the inner one is closed and opened again around the crossing. An element with no word in the
sentence (`<b></b>`) stays where it stood; an element that crosses a sentence boundary is
opened in one sentence and closed in another.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

LEADING = "([{«“‘\"'¿¡"  # punctuation a word may begin with
TRAILING = ".,;:!?)]}»\"'"  # punctuation a word may end with
GAP = 2  # target words an element's words may be apart and still be one group ("rouge" ... "vif")


@dataclass(frozen=True)
class Mark:
    """A tag of a block of markup, at a MASK of its text."""

    OPEN, CLOSE, POINT = "open", "close", "point"  # an inline element's tags; anything kept whole
    raw: str  # as written
    kind: str
    element: int  # an open and its close share it


@dataclass(frozen=True)
class Element:
    number: int
    lo: int  # the target words it wraps, lo..hi
    hi: int
    open: str | None  # its tags as written (None: in another sentence)
    close: str | None
    open_inside: bool  # the open tag goes after the first word's leading punctuation
    close_inside: bool  # the close tag goes before the last word's trailing punctuation


def position(mark: Mark, kept: str, part: str) -> tuple[int, bool]:
    """For an open or close tag between the sentence text `kept` and `part`: the source word
    it comes after (an open tag inside a word: the word before that one, so the element
    starts at the word), and whether it belongs inside the word's punctuation (the element's
    text begins, or ends, with a word, not with punctuation)."""
    words = len(kept.split())
    if mark.kind == Mark.OPEN:
        glued = bool(kept) and not kept[-1].isspace() and part[:1].strip() != ""
        return words - 1 - glued, part.lstrip()[:1] not in LEADING or not part.strip()
    inside = kept.rstrip()
    return words - 1, not inside or inside[-1] not in TRAILING


def elements(spans, source_words: int, target_words: int,
             target: Callable[[int], int]) -> tuple[list[Element], list[tuple]]:
    """The elements of a sentence's open and close `spans` (`spans.Span`s with a `Mark`) with
    their target words (all of them for an element of every source word), and, as
    (after_word, tags) to put back like a span, those with no source word in the sentence."""
    opens = {s.mark.element: s for s in spans if s.mark.kind == Mark.OPEN}
    closes = {s.mark.element: s for s in spans if s.mark.kind == Mark.CLOSE}
    found, points = [], []
    for number in sorted(opens.keys() | closes.keys()):
        o, c = opens.get(number), closes.get(number)
        first = o.after_word + 1 if o else 0
        end = c.after_word if c else source_words - 1
        if first > end:  # no word inside: the tags stay together where they stood
            points.append((o.after_word if o else c.after_word, (o.text if o else "") + (c.text if c else "")))
            continue
        whole = first == 0 and end == source_words - 1
        targets = [0, target_words - 1] if whole else _cluster([target(w) for w in range(first, end + 1)])
        found.append(Element(number, min(targets), max(targets), o.text if o else None, c.text if c else None,
                             o.attached if o else True, c.attached if c else True))
    return found, points


def _cluster(targets: list[int]) -> list[int]:
    """The largest group of target words no more than GAP apart (the first of equals): one
    function word the attention sent across the sentence does not stretch an element over it."""
    ordered = sorted(targets)
    groups = [[ordered[0]]]
    for t in ordered[1:]:
        if t - groups[-1][-1] <= GAP:
            groups[-1].append(t)
        else:
            groups.append([t])
    return max(groups, key=len)


def render(words: list[str], found: list[Element], extras: list[list[tuple[str, bool]]],
           escape: Callable[[str], str]) -> str:
    """The target `words` joined by spaces with each element's tags around its words, and
    `extras[i]` ((text, goes before the punctuation) of spans) after word i; the words escaped."""
    starting, ending = {}, {}
    for e in found:
        starting.setdefault(e.lo, []).append(e)
        ending.setdefault(e.hi, []).append(e)
    stack, out = [], []
    for i, word in enumerate(words):
        opening = sorted(starting.get(i, ()), key=lambda e: (e.close is not None, -e.hi, e.number))
        opens = "".join(e.open for e in opening if e.open is not None)
        stack += [e for e in opening if e.open is not None and e.close is not None]
        closing = ending.get(i, ())
        closes = ""
        for e in sorted((e for e in closing if e in stack), key=stack.index, reverse=True):  # innermost first
            above = stack[stack.index(e) + 1 :]  # crossing elements: closed, then opened again
            closes += "".join(a.close for a in reversed(above)) + e.close + "".join(a.open for a in above)
            stack.remove(e)
        closes += "".join(e.close for e in closing if e.open is None and e.close is not None)
        open_inside = all(e.open_inside for e in opening)
        close_inside = all(e.close_inside for e in closing)
        rest = word.lstrip(LEADING)
        lead = word[: len(word) - len(rest)]
        core = rest.rstrip(TRAILING)
        trail = rest[len(core):]
        out.append((opens * (not open_inside)) + escape(lead) + (opens * open_inside) + escape(core)
                   + (closes * close_inside) + "".join(t for t, attached in extras[i] if attached)
                   + escape(trail) + (closes * (not close_inside))
                   + "".join(t for t, attached in extras[i] if not attached))
    return " ".join(out)
