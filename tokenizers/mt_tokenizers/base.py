"""The tokenizer interface, the fixed special ids, and loading a saved tokenizer by its type."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

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

    def save(self, directory: str | Path) -> None: ...


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file so that a crash leaves either the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_config(directory: Path, config: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / CONFIG_FILE, json.dumps(config, indent=2, ensure_ascii=False).encode())


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load whichever tokenizer was saved in `directory` (its type is in tokenizer_config.json)."""
    from mt_tokenizers.char import CharTokenizer
    from mt_tokenizers.spm import SentencePieceTokenizer

    path = Path(directory) / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenizerError(f"tokenizer file missing: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenizerError(f"tokenizer file is corrupt: {path} ({e})") from None
    ids = [config.get(k) for k in ("pad_id", "unk_id", "bos_id", "eos_id")]
    if ids != [PAD_ID, UNK_ID, BOS_ID, EOS_ID]:
        raise TokenizerError(f"{path}: special ids {ids} differ from the fixed {[PAD_ID, UNK_ID, BOS_ID, EOS_ID]}")
    kind = config.get("type")
    if kind == "sentencepiece":
        return SentencePieceTokenizer.load(directory)
    if kind == "char":
        return CharTokenizer.load(directory)
    raise TokenizerError(f"{path}: unknown tokenizer type {kind!r} (expected 'sentencepiece' or 'char')")


def special_ids_config() -> dict:
    return {"pad_id": PAD_ID, "unk_id": UNK_ID, "bos_id": BOS_ID, "eos_id": EOS_ID}
