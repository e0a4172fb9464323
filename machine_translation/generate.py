"""Generate text with a decoder-only model directory: the Python API behind `mt generate`.

    Generator.from_pretrained("models/lm-input").generate(["ROMEO:"], max_new_tokens=200, seed=1)
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import torch

from machine_translation.checkpoint import LoadedModel, load_pretrained
from machine_translation.errors import ModelDirError
from machine_translation.search import sample
from machine_translation.translate import pick_device
from mt_tokenizers import CharTokenizer

logger = logging.getLogger(__name__)


class Generator:
    def __init__(self, loaded: LoadedModel):
        if loaded.config.task != "lm":
            raise ModelDirError(f"{loaded.directory} holds a translation model: use `mt translate`")
        self.loaded = loaded
        self.tokenizer = loaded.tgt_tokenizer

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | None = None) -> Generator:
        return cls(load_pretrained(directory, pick_device(device)))

    def encode_prompt(self, prompt: str) -> list[int]:
        """Prompt ids; characters a character vocabulary lacks are an error naming them."""
        tok = self.tokenizer
        ids = tok.encode(prompt, strict=True) if isinstance(tok, CharTokenizer) else tok.encode(prompt)
        window = self.loaded.config.max_positions
        if len(ids) > window:
            logger.warning("the prompt has %d tokens; only its last %d fit the context", len(ids), window)
        return ids or [tok.bos_id]

    def stream(self, prompt_ids: list[int], max_new_tokens: int, generator: torch.Generator, temperature: float = 0.8,
               top_k: int | None = 200, top_p: float | None = None, use_cache: bool = True) -> Iterator[str]:
        """Yield the continuation as text pieces, as tokens come (subwords joined correctly)."""
        ids, shown = [], ""
        for token in sample(self.loaded.model, prompt_ids, max_new_tokens, generator, temperature,
                            top_k, top_p, eos_id=self.tokenizer.eos_id, use_cache=use_cache):
            ids.append(token)
            text = self.tokenizer.decode(ids)
            yield text[len(shown):]
            shown = text

    def generate(self, prompts: list[str], max_new_tokens: int = 300, seed: int | None = None, **options) -> list[str]:
        """Each prompt followed by its continuation."""
        generator = torch.Generator().manual_seed(seed if seed is not None else int(torch.seed() % 2**31))
        return [p + "".join(self.stream(self.encode_prompt(p), max_new_tokens, generator, **options)) for p in prompts]
