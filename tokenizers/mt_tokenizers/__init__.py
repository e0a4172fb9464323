"""Tokenizers for `mt`: SentencePiece (subword), character, and Marian (imported OPUS-MT
models), behind one interface.

The package is named `mt_tokenizers` and lives in the plain folder `tokenizers/` (no
`__init__.py` there), so Hugging Face's `tokenizers` package is never shadowed or
overwritten. Imports nothing else of the project.
"""
from mt_tokenizers.base import (
    BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID, Tokenizer, TokenizerError,
)
from mt_tokenizers.char import CharTokenizer
from mt_tokenizers.load import load_tokenizer
from mt_tokenizers.marian import MarianTokenizer
from mt_tokenizers.spm import SentencePieceTokenizer

__all__ = [
    "BOS_ID", "EOS_ID", "PAD_ID", "SPECIAL_TOKENS", "UNK_ID", "CharTokenizer", "MarianTokenizer",
    "SentencePieceTokenizer", "Tokenizer", "TokenizerError", "load_tokenizer",
]
