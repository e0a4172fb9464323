"""Forward + backward of one attention call at translation's sizes, by precision and path:
PyTorch's fused `F.scaled_dot_product_attention` (its flash and math CPU backends) against
attention written out as mt writes it for bf16 on CPU (`encoder_transformer.attention`).
This is the measurement behind that choice (docs/benchmarks-log.md, 1e. Training speed, precision and memory).

    python benchmarks/attention_kernels.py [--batch 200 --heads 4 --length 20 --head-dim 64]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from encoder_transformer.attention import _written_out_attention


def ms_per_call(run, repeats: int) -> float:
    for _ in range(3):
        run()
    t = time.perf_counter()
    for _ in range(repeats):
        run()
    return 1000 * (time.perf_counter() - t) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--length", type=int, default=20)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    B, H, T, Dh = args.batch, args.heads, args.length, args.head_dim
    for causal in (True, False):
        mask = torch.ones(T, T, dtype=torch.bool).tril() if causal else torch.ones(B, 1, 1, T, dtype=torch.bool)
        for dtype in (torch.float32, torch.bfloat16):
            q, k, v = (torch.randn(B, H, T, Dh, dtype=dtype, requires_grad=True) for _ in range(3))
            paths = {f"fused ({b.name.lower()})": b for b in (SDPBackend.FLASH_ATTENTION, SDPBackend.MATH)}
            for name, backend in paths.items():
                def fused(backend=backend):
                    with sdpa_kernel(backend):
                        F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()
                print(f"{'causal' if causal else 'padding'} {str(dtype)[6:]} {name}: "
                      f"{ms_per_call(fused, args.repeats):.1f} ms")
            written = lambda: _written_out_attention(q, k, v, mask, 0.0).sum().backward()  # noqa: E731
            print(f"{'causal' if causal else 'padding'} {str(dtype)[6:]} written out: "
                  f"{ms_per_call(written, args.repeats):.1f} ms")


if __name__ == "__main__":
    main()
