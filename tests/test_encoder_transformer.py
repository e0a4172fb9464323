"""The shared layers: masks, attention, positional encodings, the encoder's PAD independence."""
import pytest
import torch
import torch.nn.functional as F

from encoder_transformer import TransformerConfig, TransformerEncoder, masks
from encoder_transformer.attention import MultiHeadAttention, _written_out_attention


def test_causal_mask_hides_the_future():
    m = masks.causal_mask(3, 0)[0, 0]
    assert m.tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    # with two cached positions, the new query sees everything up to itself
    assert masks.causal_mask(1, 2)[0, 0].tolist() == [[True, True, True]]


def test_decoder_self_mask_never_empties_a_row():
    ids = torch.tensor([[0, 0, 0, 5], [7, 0, 0, 0]])  # heavy PAD, even at position 0
    m = masks.decoder_self_mask(ids != 0, 4, 0)
    assert m.shape == (2, 1, 4, 4)
    assert m.any(dim=-1).all()
    assert not m[1, 0, 3, 1]  # a later query cannot see an earlier PAD key ...
    assert m[1, 0, 3, 3]  # ... but always sees itself


def test_no_nan_under_heavy_padding():
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=20, d_model=16, n_heads=2, n_layers=2, d_ff=32, dropout=0.0)
    enc = TransformerEncoder(cfg).eval()
    ids = torch.tensor([[5, 3, 0, 0, 0, 0, 0, 0], [3, 0, 0, 0, 0, 0, 0, 0]])
    out = enc(ids, masks.padding_mask(ids != 0))
    assert torch.isfinite(out).all()


def test_encoder_pad_independence():
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=20, d_model=16, n_heads=2, n_layers=2, d_ff=32, dropout=0.0)
    enc = TransformerEncoder(cfg).eval()
    alone = torch.tensor([[5, 6, 7, 3]])
    batch = torch.tensor([[5, 6, 7, 3, 0, 0], [8, 9, 10, 11, 12, 3]])
    out_alone = enc(alone, masks.padding_mask(alone != 0))
    out_batch = enc(batch, masks.padding_mask(batch != 0))
    torch.testing.assert_close(out_batch[0, :4], out_alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_variants_run(positional, norm_first):
    cfg = TransformerConfig(vocab_size=20, d_model=16, n_heads=2, n_layers=1, d_ff=32, positional=positional,
                            norm_first=norm_first)
    ids = torch.tensor([[4, 5, 3]])
    assert TransformerEncoder(cfg)(ids, masks.padding_mask(ids != 0)).shape == (1, 3, 16)


def test_positions_beyond_the_limit_are_an_error():
    cfg = TransformerConfig(vocab_size=20, d_model=16, n_heads=2, n_layers=1, d_ff=32, max_positions=4)
    ids = torch.ones(1, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="max_positions"):
        TransformerEncoder(cfg)(ids, masks.padding_mask(ids != 0))


def test_invalid_stack_config():
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig(vocab_size=20, d_model=30, n_heads=4)


@pytest.mark.parametrize("kind", ["causal", "padding"])
def test_written_out_attention_equals_the_fused_kernel(kind):
    """The reduced-precision CPU path computes what F.scaled_dot_product_attention does: the
    same outputs and gradients in float32, and close to them in bfloat16."""
    torch.manual_seed(0)
    B, H, T, Dh = 3, 2, 6, 8
    ids = torch.tensor([[5, 6, 7, 8, 9, 3], [5, 6, 3, 0, 0, 0], [5, 3, 0, 0, 0, 0]])
    mask = masks.decoder_self_mask(ids != 0, T, 0) if kind == "causal" else masks.padding_mask(ids != 0)
    qkv = [torch.randn(B, H, T, Dh, requires_grad=True) for _ in range(3)]
    ref = F.scaled_dot_product_attention(*qkv, attn_mask=mask)
    ref_grads = torch.autograd.grad(ref.square().sum(), qkv)
    out = _written_out_attention(*qkv, mask, 0.0)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    for got, want in zip(torch.autograd.grad(out.square().sum(), qkv), ref_grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    low = _written_out_attention(*(x.detach().bfloat16() for x in qkv), mask, 0.0)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref.detach(), atol=0.05, rtol=0.05)


def test_bfloat16_on_cpu_takes_the_written_out_path(monkeypatch):
    cfg = TransformerConfig(vocab_size=20, d_model=16, n_heads=2, n_layers=1, d_ff=32)
    attn = MultiHeadAttention(cfg).eval()
    calls = []
    monkeypatch.setattr("encoder_transformer.attention._written_out_attention",
                        lambda *a: calls.append(a[0].dtype) or _written_out_attention(*a))
    x = torch.randn(2, 5, 16)
    attn.attend(*attn.project_qkv(x), None)
    assert calls == []  # float32: the fused kernel
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attn.attend(*attn.project_qkv(x), None)
    assert calls == [torch.bfloat16]
