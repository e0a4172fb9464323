"""The past, one home: what earlier versions of mt wrote, upgraded to today's shape on load.
Nothing outside this module branches on an old format; the loaders call these functions and
then check that what they hold is current (`FORMAT_VERSION`, every field present).

Format 1 (mt before 2026-12-07) grew while keeping its number; what its files may lack or
hold, and the value the version that wrote them behaved with:
- config.json: model fields added later (`MODEL_FIELDS_ADDED`), "tokenizers" (one joint
  vocabulary) and "precision" (float32).
- weights (model.safetensors, in model directories and run checkpoints): until 2026-11-24,
  each self-attention had a query projection `q_proj` and a key/value projection `kv_proj`,
  which today are one `qkv_proj` (their rows stacked: queries, then keys and values).
- training_state.pt: no format number; no "batching" record (before 2026-11-24) or one
  without `bucket_width` (batches drawn without length buckets) and `subword_alpha`; no
  "precision" (train_config's "bf16" flag said it); no `decay_from` in the state; the
  optimizer's moments kept for `q_proj` and `kv_proj` apart.
Format 2 is format 1's last shape, always whole. Tests hold a run directory of each shape
(tests/fixtures/formats, written by scripts/make_format_fixtures.py from the old commits).
"""
from __future__ import annotations

import re

import torch
from torch import Tensor

FORMAT_VERSION = 2
FORMATS_READ = (1, 2)
MODEL_FIELDS_ADDED = {"norm_first": True, "attention_dropout": 0.0, "activation_dropout": 0.0, "activation": "relu",
                      "sinusoid_layout": "interleaved",
                      "init_std": None, "tie_output": True, "output_bias": False}
TRAIN_FIELDS_ADDED = {"average_last": 0, "decay_embeddings": False, "subword_alpha": 0.0}
TRANSLATION_BATCHING_ADDED = {"bucket_width": 0, "subword_alpha": 0.0}  # 0: no length buckets
STATE_FIELDS_ADDED = {"decay_from": 0.0}
UNFUSED = re.compile(r"^(?P<prefix>.*\.self_attn\.)(?P<part>q_proj|kv_proj)\.(?P<kind>weight|bias)$")


def migrate_config(data: dict) -> dict:
    """config.json of any format read, as today's (a new dict; unknown versions are left for
    the loader to refuse)."""
    if data.get("format_version") not in FORMATS_READ or not isinstance(data.get("model"), dict):
        return data
    return {"tokenizers": {"source": ".", "target": "."}, "precision": "fp32", **data,
            "model": {**MODEL_FIELDS_ADDED, **data["model"]}, "format_version": FORMAT_VERSION}


def fused_name(name: str) -> str:
    """`...self_attn.q_proj.weight` -> `...self_attn.qkv_proj.weight` (other names unchanged)."""
    match = UNFUSED.match(name)
    return f"{match['prefix']}qkv_proj.{match['kind']}" if match else name


def unfused_names(name: str) -> list[str]:
    """The names an old model held for today's parameter `name`: its q and kv parts for a
    fused self-attention projection, else the name itself."""
    if ".self_attn.qkv_proj." not in name:
        return [name]
    prefix, kind = name.rsplit(".qkv_proj.", 1)
    return [f"{prefix}.q_proj.{kind}", f"{prefix}.kv_proj.{kind}"]


def migrate_state_dict(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Weights of any format, with today's names (a new dict): separate q/kv self-attention
    projections are stacked into `qkv_proj`."""
    out = {name: t for name, t in tensors.items() if not UNFUSED.match(name)}
    for name in tensors:
        if UNFUSED.match(name) and fused_name(name) not in out:
            out[fused_name(name)] = torch.cat([tensors[n] for n in unfused_names(fused_name(name))], dim=0)
    return out


def is_unfused(tensor_names) -> bool:
    return any(UNFUSED.match(name) for name in tensor_names)


def migrate_training_state(training: dict, groups: list[list[str]], unfused: bool) -> dict:
    """A training_state.pt of any format as today's (in place). `groups`: today's parameter
    names of each optimizer group, in order; `unfused`: whether the checkpoint's weights had
    separate q/kv self-attention projections (their optimizer moments are stacked alike)."""
    if training.get("format_version") == FORMAT_VERSION:
        return training
    train_config = training.setdefault("train_config", {})
    bf16 = train_config.pop("bf16", False)
    train_config.setdefault("precision", "bf16" if bf16 else "fp32")
    for key, value in TRAIN_FIELDS_ADDED.items():
        train_config.setdefault(key, value)
    training.setdefault("precision", "bf16" if bf16 else train_config["precision"])
    training["model_config"] = {**MODEL_FIELDS_ADDED, **training.get("model_config", {})}
    batching = training.setdefault("batching", {"seed": train_config.get("seed")})
    if training["model_config"].get("task", "mt") == "mt":
        training["batching"] = {**TRANSLATION_BATCHING_ADDED, **batching}
    for key, value in STATE_FIELDS_ADDED.items():
        training.get("state", {}).setdefault(key, value)
    if unfused and "optimizer" in training:
        training["optimizer"] = _fuse_optimizer(training["optimizer"], groups)
    training["format_version"] = FORMAT_VERSION
    return training


def _fuse_optimizer(optimizer: dict, groups: list[list[str]]) -> dict:
    """An optimizer state_dict of a model with separate q/kv projections, for today's model:
    parameters are numbered in group order, so old and new numbers are mapped by name, and
    the moments of q and kv are stacked as their weights are."""
    old_groups = [[old for name in names for old in unfused_names(name)] for names in groups]
    if [len(g) for g in old_groups] != [len(g["params"]) for g in optimizer["param_groups"]]:
        raise ValueError("its optimizer state does not match the model's parameters")
    old_number = {name: i for i, name in enumerate(n for g in old_groups for n in g)}
    state, new_groups, number = {}, [], 0
    for names, group in zip(groups, optimizer["param_groups"]):
        new_groups.append({**group, "params": list(range(number, number + len(names)))})
        for name in names:
            parts = [optimizer["state"].get(old_number[old]) for old in unfused_names(name)]
            if all(part is not None for part in parts):
                state[number] = parts[0] if len(parts) == 1 else {
                    key: torch.cat([p[key] for p in parts]) if key.startswith("exp_avg") else parts[0][key]
                    for key in parts[0]}
            number += 1
    return {"state": state, "param_groups": new_groups}
