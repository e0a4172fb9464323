"""What `/translate` does with its texts, between the request and the batcher: the text
pipeline (`inference.pipeline`: sentences split, protected spans kept, too-long sentences cut,
an HTML text's blocks translated with its tags kept) around each text; every sentence of the request in
one batch; and the language of `source=auto` (`text.detect`).
"""
from __future__ import annotations

from machine_translation.base.options import TextOptions
from machine_translation.inference import pipeline
from machine_translation.serve.api import ApiError
from machine_translation.text.detect import Guess, detect

SURE = 0.5  # a detected language this confident that no model reads is refused; below, the likeliest served one


async def translate_texts(service, model, texts: list[str], fmt: str, n_best: int, request) -> list[list[str]]:
    """The `n_best` renderings of each text, best first (a text with fewer alternatives repeats its last)."""
    fits = lambda s: model.count_tokens(model.prefix + s) <= model.max_tokens  # noqa: E731
    prepared = pipeline.prepare(texts, TextOptions(format=fmt), model.source, fits)
    todo = sorted({s for s in prepared.sentences if s})
    defaults = model.translator.defaults
    options = defaults.updated(n_best=n_best, beam=max(defaults.beam, n_best))
    done = dict(zip(todo, await service.run(model, todo, options, request)))
    offset = len(model.prefix.split())  # a multilingual model's target tag is a source word before the text

    async def render(k: int) -> list[str]:
        chosen = [done[s][min(k, len(done[s]) - 1)] if s else None for s in prepared.sentences]
        wanted = prepared.to_align(chosen)  # aligned in batches on the model's own thread
        found = await model.runner.run(model.translator.alignments, wanted) if wanted else []
        aligned = {id(t): a for t, a in zip(wanted, found)}
        return pipeline.finish(prepared, chosen, lambda t: lambda word: aligned[id(t)].target_word_of(word + offset))

    rendered = [await render(k) for k in range(n_best)]
    return [list(renderings) for renderings in zip(*rendered)]


def detect_source(texts: list[str], sources: list[str]) -> Guess:
    """The source language of `texts` for `source=auto`: the detected one if a model reads
    it; a 400 naming it if one is detected with confidence >= SURE that none reads; else the
    likeliest of the served sources."""
    text = " ".join(texts)[:2000]
    best = detect(text)[0]
    if best.language in sources:
        return best
    if best.confidence >= SURE:
        raise ApiError(400, f"Invalid request: the text looks {best.language} (confidence "
                            f"{100 * best.confidence:.0f}), and no served model translates from it: the served "
                            f"sources are {', '.join(sources)}")
    return detect(text, tuple(sources))[0] if len(sources) > 1 else Guess(sources[0], 0.0)
