"""The CPU dropout with the cheap mask: it drops what nn.Dropout would, in expectation, and its
gradient goes through the same mask."""
import pytest
import torch

from encoder_transformer import TransformerConfig, TransformerEncoder, masks
from encoder_transformer.dropout import FastDropout, fast_dropout

N = 400_000  # elements: the drop rate's standard error is about 0.0005 at p = 0.1


@pytest.mark.parametrize("p", [0.1, 0.2, 0.3, 0.5])
def test_drops_a_fraction_p_and_keeps_the_expectation(p):
    torch.manual_seed(0)
    y = fast_dropout(torch.ones(N), p)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p) < 0.004
    kept = y[y != 0]
    assert torch.allclose(kept, kept[0].expand_as(kept))  # every kept element scaled alike ...
    assert abs(kept[0].item() - 1 / (1 - p)) < 1e-4  # ... by 1 / (1 - p)
    assert abs(y.mean().item() - 1.0) < 0.01


def test_every_element_position_is_dropped_alike():
    """Each 64-bit draw feeds four consecutive elements: each of the four must see uniform
    numbers (a draw with a constant top bit would never drop every fourth element)."""
    torch.manual_seed(1)
    y = fast_dropout(torch.ones(N), 0.2).view(-1, 4)
    lanes = (y == 0).float().mean(dim=0)  # (4,)
    assert ((lanes - 0.2).abs() < 0.006).all(), lanes


def test_gradient_goes_through_the_same_mask():
    torch.manual_seed(2)
    x = torch.randn(64, 33, requires_grad=True)
    y = fast_dropout(x, 0.25)
    g = torch.randn_like(y)
    y.backward(g)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.75, abs=0.05)
    assert torch.equal(x.grad[~kept], torch.zeros_like(x.grad[~kept]))
    assert torch.allclose(x.grad[kept], g[kept] / 0.75)
    assert torch.allclose(y[kept], x[kept] / 0.75)


def test_off_in_eval_and_at_zero_and_seeded():
    x = torch.randn(10, 10)
    layer = FastDropout(0.3).eval()
    assert layer(x) is x
    assert fast_dropout(x, 0.0) is x
    torch.manual_seed(3)
    a = fast_dropout(x, 0.3)
    b = fast_dropout(x, 0.3)
    torch.manual_seed(3)
    assert torch.equal(fast_dropout(x, 0.3), a)  # the same generator state draws the same mask
    assert not torch.equal(a, b)  # and the next call draws another


def test_keeps_the_dtype_and_shape():
    x = torch.ones(3, 5, 7, dtype=torch.bfloat16)
    y = fast_dropout(x, 0.5)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    assert set(y.unique().tolist()) <= {0.0, 2.0}


def test_a_training_encoder_drops_and_an_evaluating_one_does_not():
    torch.manual_seed(4)
    cfg = TransformerConfig(vocab_size=20, d_model=16, n_heads=2, n_layers=2, d_ff=32, dropout=0.3)
    enc = TransformerEncoder(cfg)
    ids = torch.tensor([[5, 6, 7, 3]])
    mask = masks.padding_mask(ids != 0)
    assert not torch.allclose(enc(ids, mask), enc(ids, mask))
    enc.eval()
    assert torch.equal(enc(ids, mask), enc(ids, mask))
