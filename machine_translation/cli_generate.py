"""`mt generate`: sample text from a decoder-only model, streaming tokens to stdout as they come.
Registered on the typer app by `cli.py`."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer


def generate(
    model: Path = typer.Option(..., "--model", "-m", help="Language model directory (`mt train --task lm --out`)."),
    prompt: str = typer.Option("\n", help="Text to continue; it is printed first."),
    max_new_tokens: int = typer.Option(300, min=0, help="Tokens to generate per sample."),
    temperature: float = typer.Option(0.8, min=0.0, help="0 = greedy; higher = more random."),
    top_k: Optional[int] = typer.Option(200, min=1, help="Sample among the K most likely tokens."),
    top_p: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="Nucleus sampling mass."),
    seed: Optional[int] = typer.Option(None, help="Same seed, same text (default: a fresh seed each run)."),
    num_samples: int = typer.Option(1, min=1, help="Samples, separated by a blank line."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute the whole context each token (slow)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, mps (default: auto-detected)."),
    threads: Optional[int] = typer.Option(None, min=1),
) -> None:
    """Generate text with a decoder-only language model."""
    import torch

    from machine_translation.checkpoint import read_config
    from machine_translation.errors import ModelDirError
    from machine_translation.generate import Generator
    from machine_translation.runs import set_threads
    from machine_translation.translate import pick_device

    config, _ = read_config(model)
    if config.task != "lm":
        raise ModelDirError(f"{model} holds a translation model: use `mt translate --model {model}`")
    set_threads(pick_device(device), threads)
    gen = Generator.from_pretrained(model, device)
    prompt_ids = gen.encode_prompt(prompt)  # unknown characters: one clear line before anything is printed
    seed = seed if seed is not None else int(torch.seed() % 2**31)
    generator = torch.Generator().manual_seed(seed)
    for i in range(num_samples):
        if i:
            sys.stdout.write("\n")  # a blank line between samples
        sys.stdout.write(prompt)
        for piece in gen.stream(prompt_ids, max_new_tokens, generator, temperature, top_k, top_p, not no_cache):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    sys.stdout.flush()
