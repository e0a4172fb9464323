"""Shared fixtures: tiny CPU models (D=32, 2 layers) and the shared data folder."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from machine_translation.model import ModelConfig, build_model

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def tiny_config(**overrides) -> ModelConfig:
    base = dict(vocab_size=40, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64,
                dropout=0.0, max_positions=32)
    return ModelConfig(**{**base, **overrides})


@pytest.fixture
def seq2seq():
    torch.manual_seed(0)
    return build_model(tiny_config()).eval()


@pytest.fixture
def gpt():
    torch.manual_seed(0)
    return build_model(tiny_config(task="lm")).eval()


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "multi30k").is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA}: the repo expects ../shared/data beside it")
    return SHARED_DATA
