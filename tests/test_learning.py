"""The model learns: it overfits a toy parallel corpus to exact reproduction."""
import torch

from machine_translation.data.sources import collate_pairs
from machine_translation.model.transformer import build_model
from machine_translation.inference.search import greedy_search
from machine_translation.training.tasks import sequence_loss
from tests.conftest import tiny_config


def toy_corpus(n=32, seed=0):
    """Source: random token strings; target: the reversed string shifted by 10 (a real mapping to learn)."""
    g = torch.Generator().manual_seed(seed)
    src, tgt = [], []
    for _ in range(n):
        length = int(torch.randint(3, 7, (1,), generator=g))
        s = torch.randint(4, 14, (length,), generator=g).tolist()
        src.append(s)
        tgt.append([t + 10 for t in reversed(s)])
    return src, tgt


def test_overfits_toy_corpus():
    torch.manual_seed(0)
    src, tgt = toy_corpus()
    model = build_model(tiny_config(vocab_size=24, d_model=64, d_ff=128))
    src_ids, tgt_in, labels = collate_pairs(src, tgt, pad_id=0, bos_id=2, eos_id=3)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(600):
        loss = sequence_loss(model(src_ids, tgt_in), labels, pad_id=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.01:
            break
    model.eval()
    hyps = greedy_search(model, model.start_cache(src_ids), torch.full((len(src),), 12), 2, 3)
    assert [h.tokens for h in hyps] == tgt, f"final loss {loss.item():.3f} after {step + 1} steps"
