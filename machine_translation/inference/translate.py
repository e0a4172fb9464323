"""Translate texts with a trained model directory: the Python API behind `mt translate`,
`mt evaluate` and `mt serve`.

    translator = Translator.from_pretrained("models/en-fr")
    translator.translate(["A dog runs. It is raining."])      # sentence by sentence, spans kept
    translator.translate(texts, text=AS_IS)                   # each text one sentence for the model
    translator.translations(["the cat sat"], SearchOptions(beam=4, n_best=2))  # scored n-best lists
    translator.alignment(translation)                         # what one translation attended to
    translator.translate(pages, text=TextOptions(format="html"))  # HTML: tags kept around their words
    translator.translate_document("talk.srt", data)           # a document's bytes, structure kept

`translate` runs the text pipeline (`inference.pipeline`): sentences split and joined around
their own whitespace, protected spans passed through, a sentence too long for the model cut
at its best boundary. `translations` takes each sentence whole: batched by length (order
restored), empty lines give empty translations, a source longer than the model's positions
is truncated with a warning. Search settings: the model directory's own
(`generation_config.json`), unless a call passes `SearchOptions`.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path

import torch

from machine_translation.inference import casing
from machine_translation.inference.alignment import Alignment, align
from machine_translation.inference.engine import CTranslate2Search
from machine_translation.model.directory import LoadedModel, load_pretrained, stored_precision
from machine_translation.data.sources import pad_batch
from machine_translation.base.errors import ConfigError
from machine_translation.inference.precision import Plan, apply_plan, resolve, stored_layers
from machine_translation.base.runtime import cpu_count, pick_device
from machine_translation.base.options import SearchOptions, TextOptions
from machine_translation.inference import pipeline
from machine_translation.text import documents
from machine_translation.inference.repetition import PieceTable, RepeatGuard
from machine_translation.inference.search import Ended, Hypothesis, beam_search, greedy_search

logger = logging.getLogger(__name__)
Progress = Callable[[int], None]  # told how many more sentences are done


@dataclass
class Translation:
    text: str  # what the user reads (casing restored)
    score: float  # log-probability normalised by length ** length_penalty
    tokens: list[int]  # the output pieces, without BOS/EOS
    source: str  # the sentence as the model read it (after case normalisation)


class Translator:
    """`workers` > 1 (CPU): batches are shared among that many processes of one thread
    each, as CTranslate2's inter_threads; small decoding steps use a core better alone.
    `plan`: the precision and kernels to run in (`precision.resolve`); None runs the model as
    loaded (a training run's validation, whose model must stay as it is)."""

    def __init__(self, loaded: LoadedModel, device: torch.device, workers: int = 1, plan: Plan | None = None,
                 engine: CTranslate2Search | None = None):
        if workers < 1:
            raise ConfigError(f"--workers {workers}: must be at least 1")
        self.loaded = loaded
        self.device = device
        self.plan = plan or Plan(loaded.precision, loaded.precision)
        if plan is not None:
            loaded.model = apply_plan(loaded.model, plan)
        self.model = loaded.model
        self.workers = workers if device.type == "cpu" else 1
        if self.workers > cpu_count():
            logger.warning("--workers %d: more worker processes than the %d cores this process may use; each holds "
                           "a copy of the model, and they share the cores", self.workers, cpu_count())
        self._pool: ProcessPoolExecutor | None = None
        self._pieces: dict[int, PieceTable] = {}  # id(tokenizer) -> its table
        self.defaults = loaded.search_defaults(SearchOptions)  # the model's own settings
        self.engine = engine  # None: mt's own search; else CTranslate2's (`inference.engine`)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | None = None, workers: int = 1,
                        pair: str | None = None, precision: str | None = None,
                        ctranslate2: str | Path | None = None) -> Translator:
        """Load a translation model directory (checked to be one, and of `pair` when given) to
        run in `precision` ("fp32", "bf16" or "int8"; default: the directory's own, float32
        unless `mt quantize` wrote it), refused before loading if the device cannot.
        `ctranslate2`: the model's CTranslate2 copy, to search with (`inference.engine`)."""
        dev = pick_device(device)
        plan = resolve(precision, dev, stored_precision(directory), model=str(directory))  # before loading
        loaded = load_pretrained(directory, dev, task="mt", pair=pair, layers=stored_layers)
        engine = None if ctranslate2 is None else CTranslate2Search(
            Path(ctranslate2), loaded.src_tokenizer, loaded.tgt_tokenizer, dev.type, workers, torch.get_num_threads(),
            loaded.config.max_positions)
        return cls(loaded, dev, workers, plan, engine)

    @property
    def precision(self) -> str:
        return self.plan.precision

    @property
    def pair(self) -> str | None:
        return self.loaded.pair

    def _encode_source(self, sentences: list[str]) -> list[list[int]]:
        tok = self.loaded.src_tokenizer
        limit = self.loaded.config.max_positions - 1  # room for EOS
        out = []
        for i, s in enumerate(sentences):
            ids = tok.encode(s)
            if len(ids) > limit:
                logger.warning("input line %d has %d tokens, more than the model's %d: truncated",
                               i + 1, len(ids), limit)
                ids = ids[:limit]
            out.append(ids + [tok.eos_id])
        return out

    def translate(self, texts: list[str], options: SearchOptions | None = None,
                  text: TextOptions = TextOptions(), progress: Progress | None = None) -> list[str]:
        """The best translation of each text, in order. By default a text is split into
        sentences (translated as one batch and joined around its own whitespace) and its
        protected spans pass through untouched (`inference.pipeline`); `text=AS_IS` gives
        the model each text as one sentence."""
        if not text.active:
            return [n_best[0].text for n_best in self.translations(texts, options, progress)]
        prepared = pipeline.prepare(texts, text, self.source_language, self.fits)
        best = [n_best[0] for n_best in self.translations(prepared.sentences, options, progress)]
        wanted = prepared.to_align(best)
        aligned = {id(t): a.target_word_of for t, a in zip(wanted, self.alignments(wanted))}
        return pipeline.finish(prepared, best, lambda translation: aligned[id(translation)])

    def translate_document(self, name: str, data: bytes, options: SearchOptions | None = None,
                           text: TextOptions = TextOptions(), paragraphs: bool = False) -> bytes:
        """A document (`data`, a file named `name`: .txt, .srt, .vtt, .html, .docx) translated
        with its structure kept (`text.documents`), as `mt translate --input FILE` does."""
        document = documents.load(name, data, paragraphs)
        return document.build(self.translate(document.texts, options, replace(text, format=document.format)))

    @property
    def source_language(self) -> str:
        """The source language's code ("en" of "en-fr"; "en" when the model does not say)."""
        return (self.pair or "en").split("-")[0]

    def fits(self, sentence: str) -> bool:
        """Whether the model reads `sentence` whole (its pieces and EOS within its positions)."""
        return len(self.loaded.src_tokenizer.encode(sentence)) < self.loaded.config.max_positions

    def translations(self, sentences: list[str], options: SearchOptions | None = None,
                     progress: Progress | None = None,
                     on_translation: Callable[[int, list[Translation]], None] | None = None) -> list[list[Translation]]:
        """The n-best `Translation`s of each sentence (taken whole), best first. With
        `normalize_case`, ALL-CAPS and Title-Case sentences are translated in sentence case
        (`casing`). `progress(n)` is called as each batch of n sentences is done;
        `on_translation(i, n_best)` as soon as sentence i's are known, while its batch goes on
        (mt's own search in this process; CTranslate2 and worker processes tell a batch at a time):
        `mt serve` answers each request then, not when the longest sentence of its batch ends."""
        opts = options or self.defaults
        prepared = [casing.normalize(s) if opts.normalize_case else (s, casing.AS_IS) for s in sentences]
        decode = self.loaded.tgt_tokenizer.decode

        def translated(i: int, hyps: list[Hypothesis]) -> list[Translation]:
            text, kind = prepared[i]
            return [Translation(casing.restore(decode(h.tokens), kind), h.score, h.tokens, text) for h in hyps]

        ended = None if on_translation is None else lambda i, hyps: on_translation(i, translated(i, hyps))
        return [translated(i, hyps)
                for i, hyps in enumerate(self._search([text for text, _ in prepared], opts, progress, ended))]

    def alignment(self, translation: Translation) -> Alignment:
        """The cross-attention of a translation's output pieces over its source pieces (`alignment`)."""
        return self.alignments([translation])[0]

    def alignments(self, translations: list[Translation], batch_size: int = 64) -> list[Alignment]:
        """`alignment` of each translation, in order: `batch_size` at a time (of similar
        lengths) in one teacher-forced pass each."""
        encoded = self._encode_source([t.source for t in translations])
        order = sorted(range(len(translations)), key=lambda i: (len(encoded[i]), len(translations[i].tokens)))
        out: list[Alignment] = [None] * len(translations)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            found = align(self.model, self.loaded.src_tokenizer, self.loaded.tgt_tokenizer, [encoded[i] for i in batch],
                          [translations[i].tokens for i in batch], self.loaded.config.pad_id)
            for i, alignment in zip(batch, found):
                out[i] = alignment
        return out

    def _search(self, sentences: list[str], options: SearchOptions | None = None,
                progress: Progress | None = None, on_end: Ended | None = None) -> list[list[Hypothesis]]:
        """n-best hypotheses per sentence (as given: no case handling), in input order; empty
        sentences give one empty hypothesis. `on_end(i, n_best)`: each sentence's, once known."""
        opts = options or self.defaults
        vocab = self.loaded.config.vocab_size
        if opts.beam > vocab:
            raise ConfigError(f"--beam {opts.beam}: more than the {vocab} pieces of this model's target vocabulary")
        encoded = self._encode_source(sentences)
        results: list[list[Hypothesis]] = [[Hypothesis([], 0.0, 0.0)] for _ in sentences]
        todo = sorted((i for i, s in enumerate(sentences) if s.strip()), key=lambda i: len(encoded[i]))
        empty = [i for i, s in enumerate(sentences) if not s.strip()] if on_end is not None else []
        for i in empty:  # known now
            on_end(i, results[i])
        batches = [todo[start : start + opts.batch_size] for start in range(0, len(todo), opts.batch_size)]
        # longest first: worker processes then end on short batches, not one translating the
        # longest batch while the others wait (+4% greedy, +6% beam 4 with 2 workers)
        batches.reverse()
        sources = [[encoded[i] for i in b] for b in batches]
        ends = None if on_end is None else [lambda j, h, b=b: on_end(b[j], h) for b in batches]
        for batch, hyps in zip(batches, self._search_batches(sources, opts, ends)):
            for i, h in zip(batch, hyps):
                results[i] = h
            if progress is not None:
                progress(len(batch))
        return results

    def _search_batches(self, batches: list[list[list[int]]], opts: SearchOptions,
                        ends: list[Ended] | None = None) -> Iterator[list[list[Hypothesis]]]:
        """Hypotheses of each batch of encoded sources, in order: here (each sentence told to
        its batch's `ends` as it ends), or spread over the worker processes (each takes the
        next batch as it becomes free), or all by CTranslate2."""
        if self.engine is None and (self.workers == 1 or len(batches) < 2):
            return (self._search_batch(src, opts, None if ends is None else ends[n]) for n, src in enumerate(batches))
        return _told(self._search_elsewhere(batches, opts), ends)

    def _search_elsewhere(self, batches: list[list[list[int]]], opts: SearchOptions) -> Iterator[list[list[Hypothesis]]]:
        """By CTranslate2, or by the worker processes."""
        if self.engine is not None:
            return iter(self.engine.search(batches, opts))
        if self._pool is None:  # started once, kept for later calls
            context = multiprocessing.get_context("spawn")  # fork is unsafe with OpenMP thread pools
            # Only this process holds the lifeline's writing end: when it dies, however it dies
            # (kill -9 included), the workers read EOF and exit (`_watch_parent`).
            lifeline, self._lifeline = context.Pipe(duplex=False)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                             initargs=(str(self.loaded.directory), self.precision, lifeline))
            weakref.finalize(self, self._pool.shutdown)  # stop the workers with the Translator, or at exit
        return self._pool.map(_search_in_worker, batches, repeat(opts))

    def _search_batch(self, src: list[list[int]], opts: SearchOptions,
                      on_end: Ended | None = None) -> list[list[Hypothesis]]:
        cfg = self.loaded.config
        pad, bos, eos = cfg.pad_id, self.loaded.tgt_tokenizer.bos_id, self.loaded.tgt_tokenizer.eos_id
        src_ids = pad_batch(src, pad).to(self.device)  # (B, S)
        lengths = torch.tensor([len(s) for s in src], device=self.device)
        max_len = (lengths * opts.max_len_a + opts.max_len_b).long().clamp(max=cfg.max_positions - 1)
        guard = None
        if opts.repeat_guard:
            source = self._piece_table(self.loaded.src_tokenizer).surfaces
            guard = RepeatGuard.start(self._piece_table(self.loaded.tgt_tokenizer),
                                      [[source[i] for i in ids] for ids in src], self.device)
        banned = pad if opts.suppress_pad else None
        with torch.inference_mode():
            cache = self.model.start_cache(src_ids)
            if opts.beam == 1:
                return [[h] for h in greedy_search(self.model, cache, max_len, bos, eos, guard, banned, on_end)]
            return beam_search(self.model, cache, max_len, bos, eos, opts.beam, opts.length_penalty, opts.n_best,
                               guard, banned, opts.stopping, on_end)

    def _piece_table(self, tok) -> PieceTable:
        """A vocabulary's character runs, for the repetition guard (built once per tokenizer)."""
        if id(tok) not in self._pieces:
            self._pieces[id(tok)] = PieceTable.from_pieces([tok.id_to_piece(i) for i in range(tok.vocab_size)])
        return self._pieces[id(tok)]


def _told(results: Iterator[list[list[Hypothesis]]], ends: list[Ended] | None) -> Iterator[list[list[Hypothesis]]]:
    """Each batch's hypotheses, every sentence of it told to the batch's `ends` as the batch arrives."""
    for n, hyps in enumerate(results):
        if ends is not None:
            for j, h in enumerate(hyps):
                ends[n](j, h)
        yield hyps


_WORKER: list[Translator] = []  # in a worker process only: its own copy of the model


def _start_worker(directory: str, precision: str, lifeline) -> None:
    threading.Thread(target=_watch_parent, args=(lifeline,), daemon=True).start()
    torch.set_num_threads(1)
    _WORKER.append(Translator.from_pretrained(directory, "cpu", precision=precision))


def _watch_parent(lifeline) -> None:
    """Exit this worker when the parent's end of the lifeline closes (the parent is gone)."""
    try:
        lifeline.recv()
    except (EOFError, OSError):
        pass
    os._exit(0)


def _search_in_worker(src: list[list[int]], options: SearchOptions) -> list[list[Hypothesis]]:
    return _WORKER[0]._search_batch(src, options)
