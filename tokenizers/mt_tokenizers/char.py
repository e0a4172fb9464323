"""Character tokenizer: one id per character seen in training, after the four specials.

Characters missing from the vocabulary map to <unk>, or raise with `strict=True` so that
a caller (text generation) can name them instead of silently losing them.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from mt_tokenizers.base import (
    BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID, TokenizerError, special_ids_config, write_config,
)
from mt_tokenizers.files import read_json, write_atomic

VOCAB_FILE = "char_vocab.json"


class CharTokenizer:
    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, chars: list[str]):
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise TokenizerError("character vocabulary must hold distinct single characters")
        self.chars = list(chars)
        self._id = {c: i + len(SPECIAL_TOKENS) for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        seen: set[str] = set()
        for text in texts:
            seen.update(text)
        return cls(sorted(seen))

    @property
    def vocab_size(self) -> int:
        return len(SPECIAL_TOKENS) + len(self.chars)

    def unknown_chars(self, text: str) -> list[str]:
        return sorted({c for c in text if c not in self._id})

    def encode(self, text: str, strict: bool = False) -> list[int]:
        if strict and (missing := self.unknown_chars(text)):
            raise TokenizerError(f"characters not in the vocabulary: {' '.join(map(repr, missing))}")
        return [self._id.get(c, UNK_ID) for c in text]

    def id_to_piece(self, i: int) -> str:
        return SPECIAL_TOKENS[i] if i < len(SPECIAL_TOKENS) else self.chars[i - len(SPECIAL_TOKENS)]

    def decode(self, ids: list[int]) -> str:
        n = len(SPECIAL_TOKENS)
        return "".join(self.chars[i - n] for i in ids if i >= n)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(directory / VOCAB_FILE, json.dumps(self.chars, ensure_ascii=False).encode())
        write_config(directory, {"type": "char", "vocab_file": VOCAB_FILE, **special_ids_config()})

    @classmethod
    def load(cls, directory: str | Path) -> CharTokenizer:
        path = Path(directory) / VOCAB_FILE
        chars = read_json(path, TokenizerError, "tokenizer file")
        if not isinstance(chars, list) or not all(isinstance(c, str) for c in chars):
            raise TokenizerError(f"tokenizer file is corrupt: {path} (expected a list of characters)")
        return cls(chars)
