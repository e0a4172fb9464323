"""The label-smoothed cross-entropy node equals F.cross_entropy, value and gradient."""
import pytest
import torch
import torch.nn.functional as F

from machine_translation.training.fused_loss import label_smoothed_cross_entropy
from machine_translation.training.tasks import sequence_loss


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("ignore_index", [0, -100])
@pytest.mark.parametrize("rows", [50, 600])  # 600: more than one block of ROWS, the last one partial
@pytest.mark.parametrize("reuse_logits", [False, True])
def test_equals_torch_cross_entropy_value_and_gradient(eps, reduction, ignore_index, rows, reuse_logits):
    torch.manual_seed(0)
    logits = (torch.randn(rows, 37, dtype=torch.float64) * 3).requires_grad_()
    labels = torch.randint(1, 37, (rows,))
    labels[::4] = ignore_index if ignore_index >= 0 else 0  # some rows ignored (or, at -100, PAD-like id 0 kept)
    if ignore_index < 0:
        labels[::5] = -100
    # with reuse_logits the node's input is a model's output (here logits * 1), whose memory becomes the gradient
    ours = label_smoothed_cross_entropy(logits * 1 if reuse_logits else logits, labels, ignore_index, eps, reduction,
                                        reuse_logits)
    ref_logits = logits.detach().clone().requires_grad_()
    ref = F.cross_entropy(ref_logits, labels, ignore_index=ignore_index, label_smoothing=eps, reduction=reduction)
    assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-12)
    g = torch.tensor(0.7, dtype=torch.float64)  # an upstream gradient that is not 1
    (ours * g).backward()
    (ref * g).backward()
    assert torch.allclose(logits.grad, ref_logits.grad, rtol=1e-10, atol=1e-12)
    ignored = labels == ignore_index
    assert torch.equal(logits.grad[ignored], torch.zeros_like(logits.grad[ignored]))  # ignored rows get nothing


def test_reused_logits_refuse_a_second_backward():
    """The gradient overwrites the logits: backward through the node again must fail, not
    read them; without reuse_logits a retained graph gives the same gradient twice."""
    torch.manual_seed(3)
    x = torch.randn(8, 11, requires_grad=True)
    labels = torch.randint(0, 11, (8,))
    loss = label_smoothed_cross_entropy(x * 2, labels, -100, 0.1, "sum", reuse_logits=True)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    kept = label_smoothed_cross_entropy(x * 2, labels, -100, 0.1, "sum")
    first = torch.autograd.grad(kept, x, retain_graph=True)[0]
    assert torch.equal(first, torch.autograd.grad(kept, x)[0])


def test_gradient_passes_gradcheck():
    torch.manual_seed(1)
    logits = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1, 0, 4, 2, 0, 3])
    assert torch.autograd.gradcheck(lambda x: label_smoothed_cross_entropy(x, labels, 0, 0.2, "sum"), (logits,))


def test_sequence_loss_in_float32_matches_torch():
    torch.manual_seed(2)
    logits = torch.randn(4, 7, 300)  # (B, T, V)
    labels = torch.randint(1, 300, (4, 7))
    labels[:, 5:] = 0  # PAD
    ours = sequence_loss(logits, labels, pad_id=0, label_smoothing=0.1, reduction="sum")
    ref = F.cross_entropy(logits.reshape(-1, 300), labels.reshape(-1), ignore_index=0, label_smoothing=0.1,
                          reduction="sum")
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)


def test_bad_reduction_is_refused():
    with pytest.raises(ValueError, match="reduction"):
        label_smoothed_cross_entropy(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 0, 0.0, "none")
