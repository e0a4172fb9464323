"""`--engine ctranslate2`: the search of a `Translator` done by CTranslate2 on the model's
exported copy (`mt export --to ctranslate2`), with mt's tokenisation, batching, case
handling, text pipeline and API around it. The model's own weights stay loaded for what
CTranslate2 does not give: the cross-attention (a teacher-forced pass of the same weights
over CTranslate2's output) that places protected spans and HTML tags and draws --attention.

What differs from mt's own search: CTranslate2 has no repetition guard (one warning when the
model's settings ask for it) and takes one length limit per call (the longest sentence's
a * length + b) where mt gives each sentence its own.
"""
from __future__ import annotations

import logging
from pathlib import Path

from machine_translation.base.errors import ConfigError
from machine_translation.inference.search import Hypothesis

logger = logging.getLogger(__name__)
ENGINES = ("torch", "ctranslate2")
INSTALL = "pip install 'mt[ctranslate2]'"


class CTranslate2Search:
    def __init__(self, directory: Path, src_tokenizer, tgt_tokenizer, device: str, workers: int, threads: int,
                 max_positions: int):
        try:
            import ctranslate2
        except ImportError:
            raise ConfigError(f"--engine ctranslate2 needs the ctranslate2 package: {INSTALL}") from None
        if device not in ("cpu", "cuda"):
            raise ConfigError(f"--engine ctranslate2 runs on cpu or cuda, not {device}: use --engine torch")
        self.translator = ctranslate2.Translator(str(directory), device=device, inter_threads=workers,
                                                 intra_threads=max(1, threads // workers))
        self.src, self.tgt, self.max_positions = src_tokenizer, tgt_tokenizer, max_positions
        self.ids = {tgt_tokenizer.id_to_piece(i): i for i in range(tgt_tokenizer.vocab_size)}
        self.warned = False

    def search(self, batches: list[list[list[int]]], opts) -> list[list[list[Hypothesis]]]:
        """The n-best hypotheses of each sentence of each batch of encoded sources (EOS included),
        in one call so that CTranslate2 spreads the batches over its translators."""
        if opts.repeat_guard and not self.warned:
            logger.warning("the repetition guard is mt's own: CTranslate2 searches without it (--no-repeat-guard "
                           "to silence this)")
            self.warned = True
        flat = [ids for batch in batches for ids in batch]
        if not flat:
            return [[] for _ in batches]
        longest = max(int(len(ids) * opts.max_len_a + opts.max_len_b) for ids in flat)
        results = self.translator.translate_batch(
            [[self.src.id_to_piece(i) for i in ids] for ids in flat], beam_size=opts.beam,
            num_hypotheses=opts.n_best, length_penalty=opts.length_penalty, return_scores=True,
            max_decoding_length=min(longest, self.max_positions - 1), max_batch_size=max(map(len, batches)),
            suppress_sequences=[[self.tgt.id_to_piece(self.tgt.pad_id)]] if opts.suppress_pad else None)
        hypotheses = [[self._hypothesis(pieces, score, opts.length_penalty)
                       for pieces, score in zip(r.hypotheses, r.scores)] for r in results]
        out, start = [], 0
        for batch in batches:
            out.append(hypotheses[start : start + len(batch)])
            start += len(batch)
        return out

    def _hypothesis(self, pieces: list[str], score: float, length_penalty: float) -> Hypothesis:
        tokens = [self.ids[p] for p in pieces]
        return Hypothesis(tokens, score, score * (len(tokens) + 1) ** length_penalty)
