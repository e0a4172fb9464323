"""Loading a saved tokenizer by the type its `tokenizer_config.json` names.

Kept apart from `base.py` so the interface module does not import its implementations.
"""
from __future__ import annotations

from pathlib import Path

from mt_tokenizers.base import BOS_ID, CONFIG_FILE, EOS_ID, PAD_ID, UNK_ID, Tokenizer, TokenizerError
from mt_tokenizers.char import CharTokenizer
from mt_tokenizers.files import read_json
from mt_tokenizers.marian import MarianTokenizer
from mt_tokenizers.spm import SentencePieceTokenizer


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load whichever tokenizer was saved in `directory` (its type is in tokenizer_config.json)."""
    path = Path(directory) / CONFIG_FILE
    config = read_json(path, TokenizerError, "tokenizer file")
    if not isinstance(config, dict):
        raise TokenizerError(f"tokenizer file is corrupt: {path} (expected a JSON object)")
    kind = config.get("type")
    if kind == "marian":  # an imported model's: its special ids are its own (checked against its vocabulary)
        return MarianTokenizer.load(directory)
    ids = [config.get(k) for k in ("pad_id", "unk_id", "bos_id", "eos_id")]
    if ids != [PAD_ID, UNK_ID, BOS_ID, EOS_ID]:
        raise TokenizerError(f"{path}: special ids {ids} differ from the fixed {[PAD_ID, UNK_ID, BOS_ID, EOS_ID]}")
    if kind == "sentencepiece":
        return SentencePieceTokenizer.load(directory)
    if kind == "char":
        return CharTokenizer.load(directory)
    raise TokenizerError(f"{path}: unknown tokenizer type {kind!r} (expected 'sentencepiece', 'char' or 'marian')")
