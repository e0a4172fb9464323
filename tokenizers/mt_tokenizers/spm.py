"""SentencePiece tokenizer: trained from an iterator of sentences, unigram or BPE.

Full character coverage and byte fallback keep accents, « » and rare characters intact
through encode/decode. The serialized model is saved as `spm.model`.
"""
from __future__ import annotations

import io
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import sentencepiece as spm

from mt_tokenizers.base import (
    BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID, TokenizerError, special_ids_config, write_config,
)
from mt_tokenizers.files import write_atomic

MODEL_FILE = "spm.model"


class SentencePieceTokenizer:
    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, model_proto: bytes):
        self._proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self._piece_scores: np.ndarray | None = None  # (V,), made by the first sample_encode
        pieces = [self._sp.id_to_piece(i) for i in range(4)]
        if pieces != list(SPECIAL_TOKENS):
            raise TokenizerError(f"SentencePiece model has special pieces {pieces}, expected {list(SPECIAL_TOKENS)}")

    @classmethod
    def train(
        cls,
        sentences: Iterable[str],
        vocab_size: int,
        model_type: str = "unigram",
        byte_fallback: bool = True,
        input_sentence_size: int = 2_000_000,
        seed: int = 0,
    ) -> SentencePieceTokenizer:
        """Train on `sentences` (one per item). `vocab_size` is an upper bound on small corpora."""
        if model_type not in ("unigram", "bpe"):
            raise TokenizerError(f"model_type must be 'unigram' or 'bpe', got {model_type!r}")
        buffer = io.BytesIO()
        spm.set_random_generator_seed(seed)  # sentence sampling repeats for one seed
        characters: set[str] = set()  # what the vocabulary must hold, to name the smallest size that works

        def fed():
            for s in sentences:
                if s.strip():
                    characters.update(s)
                    yield s

        feed = fed()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=feed,
                model_writer=buffer,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=1.0,
                byte_fallback=byte_fallback,
                hard_vocab_limit=False,
                pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
                pad_piece="<pad>", unk_piece="<unk>", bos_piece="<bos>", eos_piece="<eos>",
                input_sentence_size=input_sentence_size,
                shuffle_input_sentence=True,
                num_threads=2,
                minloglevel=2,
            )
        except RuntimeError as e:
            said = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(e))
            if not said:
                for _ in feed:  # SentencePiece stopped early: count the characters of the rest
                    pass
            needed = int(said.group(1)) if said else \
                len(characters - {" "}) + 1 + len(SPECIAL_TOKENS) + (256 if byte_fallback else 0)  # " " is "▁"
            if vocab_size < needed:
                raise TokenizerError(f"--vocab-size {vocab_size} is too small for this text: its characters, the "
                                     f"special pieces{' and 256 byte pieces' if byte_fallback else ''} need "
                                     f"--vocab-size {needed} or more") from None
            raise TokenizerError(f"SentencePiece training failed: {e}") from None
        return cls(buffer.getvalue())

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._sp.encode(texts)

    def decode(self, ids: list[int]) -> str:
        return self._sp.decode([i for i in ids if i >= 4])

    @property
    def can_sample(self) -> bool:
        """Whether `sample_encode` works (`lists_segmentations`)."""
        return lists_segmentations(self._sp)

    def sample_encode(self, text: str, alpha: float, u: float, nbest: int = 64) -> list[int]:
        """One segmentation of `text` drawn from its `nbest` most likely ones (`draw_segmentation`)."""
        if self._piece_scores is None:  # log-probability of each piece under the unigram model
            self._piece_scores = np.array([self._sp.get_score(i) for i in range(self.vocab_size)])
        return draw_segmentation(self._sp, self._piece_scores, text, alpha, u, nbest)

    @property
    def model_proto(self) -> bytes:
        """The serialized SentencePiece model (what `spm.model` holds)."""
        return self._proto

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(i)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(directory / MODEL_FILE, self._proto)
        write_config(directory, {"type": "sentencepiece", "model_file": MODEL_FILE, **special_ids_config()})

    @classmethod
    def load(cls, directory: str | Path) -> SentencePieceTokenizer:
        path = Path(directory) / MODEL_FILE
        try:
            proto = path.read_bytes()
        except FileNotFoundError:
            raise TokenizerError(f"tokenizer file missing: {path}") from None
        except OSError as e:
            raise TokenizerError(f"tokenizer file is unreadable: {path} ({e.strerror})") from None
        if not proto:
            raise TokenizerError(f"tokenizer file is corrupt: {path} (it is empty)")
        try:
            return cls(proto)
        except Exception as e:  # sentencepiece raises RuntimeError, or others, on a damaged model
            raise TokenizerError(f"tokenizer file is corrupt: {path} ({e})") from None


def lists_segmentations(sp: spm.SentencePieceProcessor) -> bool:
    """Unigram models list n-best segmentations (so one can be sampled); BPE ones do not."""
    try:
        sp.nbest_encode("a", nbest_size=2)
    except RuntimeError:
        return False
    return True


def draw_segmentation(sp: spm.SentencePieceProcessor, piece_scores: np.ndarray, text: str, alpha: float, u: float,
                      nbest: int = 64) -> list[int]:
    """One segmentation of `text` (SentencePiece ids) drawn from its `nbest` most likely ones
    with probability proportional to P(segmentation) ** alpha: subword regularisation by l-best
    sampling (Kudo 2018). `u` in [0, 1) is the caller's uniform draw (the inverse CDF is taken
    at it), so a draw repeats in any process; SentencePiece's own sampler does not (its
    generator differs between processes for the same seed). `piece_scores`: each piece's
    log-probability under the unigram model."""
    candidates = sp.nbest_encode(text, nbest_size=nbest)
    if len(candidates) < 2:
        return candidates[0] if candidates else []
    lengths = np.fromiter(map(len, candidates), dtype=np.int64, count=len(candidates))
    ids = np.fromiter((i for c in candidates for i in c), dtype=np.int64, count=int(lengths.sum()))
    log_p = alpha * np.add.reduceat(piece_scores[ids], np.cumsum(lengths) - lengths)  # (n,)
    cdf = np.cumsum(np.exp(log_p - log_p.max()))
    return candidates[min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), len(candidates) - 1)]
