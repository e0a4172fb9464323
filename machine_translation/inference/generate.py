"""Generate text with a decoder-only model directory: the Python API behind `mt generate`.

    Generator.from_pretrained("models/lm-input").generate(["ROMEO:"], max_new_tokens=200, seed=1)

Sampling settings: the model directory's own (`generation_config.json`), unless a call
changes them.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import torch

from machine_translation.model.directory import LoadedModel, load_pretrained
from machine_translation.base.runtime import pick_device
from machine_translation.base.options import SamplingOptions
from machine_translation.inference.search import sample
from mt_tokenizers import CharTokenizer

logger = logging.getLogger(__name__)


class Generator:
    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.tokenizer = loaded.tgt_tokenizer
        self.defaults = loaded.search_defaults(SamplingOptions)  # the model's own settings

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | None = None) -> Generator:
        """Load a language model directory (checked to be one)."""
        return cls(load_pretrained(directory, pick_device(device), task="lm"))

    def encode_prompt(self, prompt: str) -> list[int]:
        """Prompt ids; characters a character vocabulary lacks are an error naming them."""
        tok = self.tokenizer
        ids = tok.encode(prompt, strict=True) if isinstance(tok, CharTokenizer) else tok.encode(prompt)
        window = self.loaded.config.max_positions
        if len(ids) > window:
            logger.warning("the prompt has %d tokens; only its last %d fit the context", len(ids), window)
        return ids or [tok.bos_id]

    def stream(self, prompt_ids: list[int], generator: torch.Generator, options: SamplingOptions | None = None,
               use_cache: bool = True) -> Iterator[str]:
        """Yield the continuation as text pieces, as tokens come (subwords joined correctly)."""
        ids, shown = [], ""
        for token in sample(self.loaded.model, prompt_ids, generator, options or self.defaults,
                            eos_id=self.tokenizer.eos_id, use_cache=use_cache):
            ids.append(token)
            text = self.tokenizer.decode(ids)
            yield text[len(shown):]
            shown = text

    def generate(self, prompts: list[str], seed: int | None = None, options: SamplingOptions | None = None,
                 **changes) -> list[str]:
        """Each prompt followed by its continuation; `changes` (e.g. max_new_tokens=200) adjust `options`."""
        opts = (options or self.defaults).updated(**changes)
        generator = torch.Generator().manual_seed(seed if seed is not None else int(torch.seed() % 2**31))
        return [p + "".join(self.stream(self.encode_prompt(p), generator, opts)) for p in prompts]
