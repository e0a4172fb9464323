"""`mt generate`: sample text from a decoder-only model, streaming tokens to stdout as they
come. Sampling flags default to the model's own settings (its generation_config.json)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from machine_translation.cli.app import app, cli_errors
from machine_translation.cli.translate import MODEL_SETTING
from machine_translation.base.options import SamplingOptions as S
from machine_translation.base.options import check_seed


@app.command()
@cli_errors
def generate(
    model: Path = typer.Option(..., "--model", "-m", help="Language model directory (`mt train --task lm --out`)."),
    prompt: str = typer.Option("\n", help="Text to continue; it is printed first."),
    max_new_tokens: Optional[int] = typer.Option(None, min=0, help="Tokens to generate per sample "
                                                 f"({MODEL_SETTING.format(S.max_new_tokens)})."),
    temperature: Optional[float] = typer.Option(None, min=0.0, help="0 = greedy; higher = more random "
                                                f"({MODEL_SETTING.format(S.temperature)})."),
    top_k: Optional[int] = typer.Option(None, min=0, help="Sample among the K most likely tokens; 0 = all "
                                        f"({MODEL_SETTING.format(S.top_k)})."),
    top_p: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="Nucleus sampling mass; 1 = off, 0 = only "
                                          "the most likely token (default: the model's, else off)."),
    seed: Optional[int] = typer.Option(None, help="Same seed, same text (default: a fresh seed each run)."),
    num_samples: int = typer.Option(1, min=1, help="Samples, separated by a blank line."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute the whole context each token (slow)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, mps (default: auto-detected)."),
    threads: Optional[int] = typer.Option(None, min=1),
) -> None:
    """Generate text with a decoder-only language model."""
    import torch

    from machine_translation.inference.generate import Generator
    from machine_translation.base.runtime import prepare

    if seed is not None:
        check_seed(seed)
    prepare(device, threads)
    gen = Generator.from_pretrained(model, device)
    options = gen.defaults.updated(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p)
    prompt_ids = gen.encode_prompt(prompt)  # unknown characters: one clear line before anything is printed
    seed = seed if seed is not None else int(torch.seed() % 2**31)
    generator = torch.Generator().manual_seed(seed)
    for i in range(num_samples):
        if i:
            sys.stdout.write("\n")  # a blank line between samples
        sys.stdout.write(prompt)
        for piece in gen.stream(prompt_ids, generator, options, use_cache=not no_cache):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    sys.stdout.flush()
