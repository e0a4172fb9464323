"""The tokenizer interface, the fixed special ids, and the tokenizer config file."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from mt_tokenizers.files import write_json

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")  # in id order
CONFIG_FILE = "tokenizer_config.json"


class TokenizerError(Exception):
    """A tokenizer could not be trained, loaded, or asked to encode this text."""


class Tokenizer(Protocol):
    pad_id: int
    unk_id: int
    bos_id: int
    eos_id: int

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def id_to_piece(self, i: int) -> str: ...

    def save(self, directory: str | Path) -> None: ...


def write_config(directory: Path, config: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / CONFIG_FILE, config)


def special_ids_config() -> dict:
    return {"pad_id": PAD_ID, "unk_id": UNK_ID, "bos_id": BOS_ID, "eos_id": EOS_ID}
