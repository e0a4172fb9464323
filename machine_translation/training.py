"""Training: the teacher-forcing loss (and, growing with the CLI, the loop around it)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def sequence_loss(logits: Tensor, labels: Tensor, pad_id: int, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy over non-PAD target tokens: logits (B, T, V), labels (B, T)."""
    V = logits.size(-1)
    return F.cross_entropy(
        logits.reshape(-1, V).float(), labels.reshape(-1),  # (B*T, V), (B*T,)
        ignore_index=pad_id, label_smoothing=label_smoothing,
    )
