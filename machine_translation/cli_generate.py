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

    from machine_translation.checkpoint import load_pretrained, read_config
    from machine_translation.errors import ModelDirError
    from machine_translation.runs import set_threads
    from machine_translation.search import sample
    from machine_translation.translate import pick_device
    from mt_tokenizers import CharTokenizer

    config, _ = read_config(model)
    if config.task != "lm":
        raise ModelDirError(f"{model} holds a translation model: use `mt translate --model {model}`")
    dev = pick_device(device)
    set_threads(dev, threads)
    loaded = load_pretrained(model, dev)
    tok = loaded.tgt_tokenizer
    prompt_ids = tok.encode(prompt, strict=True) if isinstance(tok, CharTokenizer) else tok.encode(prompt)
    if not prompt_ids:
        prompt_ids = [tok.bos_id]
    if len(prompt_ids) > config.max_positions:
        typer.echo(f"warning: the prompt has {len(prompt_ids)} tokens; only its last {config.max_positions} "
                   "fit the context", err=True)
    seed = seed if seed is not None else int(torch.seed() % 2**31)
    generator = torch.Generator().manual_seed(seed)
    for i in range(num_samples):
        if i:
            sys.stdout.write("\n")  # a blank line between samples
        sys.stdout.write(prompt)
        ids: list[int] = []
        shown = ""
        for token in sample(loaded.model, prompt_ids, max_new_tokens, generator, temperature, top_k, top_p,
                            eos_id=tok.eos_id, use_cache=not no_cache):
            ids.append(token)
            text = tok.decode(ids)  # decode the whole continuation: subword pieces join correctly
            sys.stdout.write(text[len(shown):])
            sys.stdout.flush()
            shown = text
        sys.stdout.write("\n")
    sys.stdout.flush()
