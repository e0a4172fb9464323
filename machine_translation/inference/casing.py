"""Input cased unlike the training corpus: an ALL-CAPS or Title-Case sentence is translated in
sentence case (a model trained on captions has seen little else), and the translation of an
ALL-CAPS sentence is given back in capitals, as a reader of a shouted line or a headline in
capitals expects. Other sentences are left exactly as they are.

`normalize` and `restore` are the two halves; the Translator applies them when its
`SearchOptions.normalize_case` is on.
"""
from __future__ import annotations

UPPER, TITLE, AS_IS = "upper", "title", "as-is"


def kind_of(sentence: str) -> str:
    letters = [c for c in sentence if c.isalpha() and c.lower() != c.upper()]  # letters that have a case
    if len(letters) >= 4 and sum(c.isupper() for c in letters) / len(letters) >= 0.9:
        return UPPER
    words = [w for w in sentence.split() if any(c.isalpha() for c in w)]
    if len(words) >= 3 and sum(w[0].isupper() for w in words) / len(words) >= 0.8:
        return TITLE
    return AS_IS


def normalize(sentence: str) -> tuple[str, str]:
    """(the sentence to translate, its kind); only ALL-CAPS and Title-Case sentences change."""
    kind = kind_of(sentence)
    if kind == AS_IS:
        return sentence, kind
    lower = sentence.lower()
    start = len(lower) - len(lower.lstrip())
    return lower[:start] + lower[start : start + 1].upper() + lower[start + 1 :], kind


def restore(translation: str, kind: str) -> str:
    return translation.upper() if kind == UPPER else translation
