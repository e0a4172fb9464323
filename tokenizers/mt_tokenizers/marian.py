"""One side of a Marian (OPUS-MT) model's tokenisation, as Hugging Face's `MarianTokenizer`
does it: a SentencePiece model cuts the text into pieces, and the model's own vocabulary
(`vocab.json`, in Marian's order, not SentencePiece's) numbers them; a piece it lacks is
`<unk>`. A leading language token such as `>>fra<<` (multilingual models) is kept whole.
No BOS: a source ends with `</s>` (added by the caller, as for every tokenizer here), and
the decoder starts from `<pad>`, so `bos_id` is the PAD id. Special ids are the model's own
(OPUS-MT: `</s>` 0, `<unk>` 1, `<pad>` last), read from its vocabulary.

`prefix` (a language token, e.g. ">>fra<<") is put before every source text that does not
start with one: it is how a multilingual model is told its target language.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import sentencepiece as spm

from mt_tokenizers.base import CONFIG_FILE, TokenizerError, write_config
from mt_tokenizers.files import read_json, write_atomic
from mt_tokenizers.spm import draw_segmentation, lists_segmentations

EOS, UNK, PAD = "</s>", "<unk>", "<pad>"


class MarianTokenizer:
    def __init__(self, spm_proto: bytes, vocab: dict[str, int], spm_name: str = "source.spm",
                 prefix: str | None = None, specials: tuple[str, str, str] = (EOS, UNK, PAD), start: str | None = None):
        """`specials`: the pieces of EOS, UNK and PAD (tokenizer_config.json's eos_token,
        unk_token, pad_token); `start`: the piece the decoder starts from (None: PAD, as
        Marian's own models; a model `mt export` wrote starts from its <bos>)."""
        missing = [t for t in (*specials, start or specials[2]) if t not in vocab]
        if missing:
            raise TokenizerError(f"the vocabulary has no {missing[0]} entry: not a Marian vocabulary")
        self._proto, self.vocab, self.spm_name, self.prefix = spm_proto, vocab, spm_name, prefix
        self.specials, self.start = tuple(specials), start
        self._sp = spm.SentencePieceProcessor(model_proto=spm_proto)
        self._pieces = {i: p for p, i in vocab.items()}
        self.eos_id, self.unk_id, self.pad_id = (vocab[t] for t in specials)
        self.bos_id = vocab[start] if start else self.pad_id  # the decoder starts from PAD unless told
        self._special = {self.eos_id, self.unk_id, self.pad_id}
        self._scores: np.ndarray | None = None  # of the SentencePiece pieces, for sampling
        if prefix is not None and prefix not in vocab:
            raise TokenizerError(f"the language token {prefix} is not in this model's vocabulary")

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def language_tokens(self) -> list[str]:
        """The `>>xx<<` target-language tokens of a multilingual model's vocabulary."""
        return sorted(p for p in self.vocab if p.startswith(">>") and p.endswith("<<"))

    def _split_code(self, text: str) -> tuple[list[str], str]:
        if text.startswith(">>") and (end := text.find("<<")) != -1:
            return [text[: end + 2]], text[end + 2 :]
        return ([self.prefix] if self.prefix else []), text

    def encode(self, text: str) -> list[int]:
        code, text = self._split_code(text)
        pieces = code + self._sp.encode(text, out_type=str)
        return [self.vocab.get(p, self.unk_id) for p in pieces]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: list[int]) -> str:
        """Special pieces are left out (as `skip_special_tokens=True`)."""
        pieces = [self._pieces.get(i, UNK) for i in ids if i not in self._special]
        return self._sp.decode_pieces(pieces).replace("\u2581", " ").strip()

    def id_to_piece(self, i: int) -> str:
        return self._pieces.get(i, UNK)

    @property
    def can_sample(self) -> bool:
        """Whether `sample_encode` works (`lists_segmentations`)."""
        return lists_segmentations(self._sp)

    def sample_encode(self, text: str, alpha: float, u: float, nbest: int = 64) -> list[int]:
        """One segmentation drawn as `SentencePieceTokenizer.sample_encode` draws it, numbered
        by this vocabulary."""
        if self._scores is None:
            self._scores = np.array([self._sp.get_score(i) for i in range(self._sp.get_piece_size())])
        code, text = self._split_code(text)
        ids = draw_segmentation(self._sp, self._scores, text, alpha, u, nbest)
        return [self.vocab.get(p, self.unk_id) for p in code + [self._sp.id_to_piece(i) for i in ids]]

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(directory / self.spm_name, self._proto)
        write_atomic(directory / "vocab.json", (json.dumps(self.vocab, ensure_ascii=False, indent=1) + "\n").encode())
        write_config(directory, {"type": "marian", "spm_file": self.spm_name, "vocab_file": "vocab.json",
                                 "prefix": self.prefix, "pad_id": self.pad_id, "unk_id": self.unk_id,
                                 "bos_id": self.bos_id, "eos_id": self.eos_id, "specials": list(self.specials),
                                 "start": self.start})

    @classmethod
    def load(cls, directory: str | Path) -> MarianTokenizer:
        directory = Path(directory)
        config = read_json(directory / CONFIG_FILE, TokenizerError, "tokenizer file")
        vocab = read_vocab(directory / str(config.get("vocab_file", "vocab.json")))
        spm_path = directory / str(config.get("spm_file", "source.spm"))
        try:
            proto = spm_path.read_bytes()
            tok = cls(proto, vocab, spm_path.name, config.get("prefix"), tuple(config.get("specials") or (EOS, UNK, PAD)),
                      config.get("start"))
        except FileNotFoundError:
            raise TokenizerError(f"tokenizer file missing: {spm_path}") from None
        except (OSError, RuntimeError) as e:
            raise TokenizerError(f"tokenizer file is corrupt: {spm_path} ({e})") from None
        ids = [config.get(k) for k in ("pad_id", "unk_id", "bos_id", "eos_id")]
        if ids != [tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id]:
            raise TokenizerError(f"{directory / CONFIG_FILE}: special ids {ids} disagree with {spm_path.parent}/"
                                 f"{config.get('vocab_file', 'vocab.json')}")
        return tok


def read_vocab(path: Path) -> dict[str, int]:
    """A Marian `vocab.json`: {piece: id}, every id used once, 0 .. n - 1."""
    vocab = read_json(path, TokenizerError, "vocabulary file")
    if not isinstance(vocab, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in vocab.values()):
        raise TokenizerError(f"{path} is not a vocabulary: expected a JSON object of piece -> id")
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise TokenizerError(f"{path}: the ids are not 0 .. {len(vocab) - 1}, each once")
    return vocab
