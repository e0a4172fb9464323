"""Validation BLEU and time of one model in float32 and in int8 quantization variants, to
choose how int8 inputs are quantized (on val only). Beam 4, the model's own search settings,
the whole val split, 2 threads.

- fp32: the float32 model;
- int8: `--precision int8` as mt runs it on this CPU (`runtime.onednn_u8_int8` picks the kernel);
- int8-signed: the u8 kernel with every input on [-63, 63] plus 64, also the ReLU outputs
  that `FeedForward.nonnegative_inputs` gives 0..127 (mt before that declaration);
- int8-asym: the u8 kernel with every row on its own [min, max] mapped to 0..127, the zero
  point subtracted after the product (a rank-1 correction; tried, not adopted);
- int8-s8: `torch._int_mm` on [-127, 127] (the kernel of CPUs with VNNI; slow without).

    python benchmarks/int8_variants.py --model /tmp/r30/mt --variants fp32 int8 int8-signed int8-asym int8-s8
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace

import torch
from torch import Tensor

from machine_translation.data.sources import parse_data_spec, read_split
from machine_translation.inference.evaluate import score_translations
from machine_translation.inference.kernels import Int8Linear
from machine_translation.inference.translate import Translator


def asymmetric_forward(layer: Int8Linear, x: Tensor) -> Tensor:
    """Each row of x (M, in) on its own [min, max] (0 included) as 0..127; (M, out)."""
    lo, hi = torch.aminmax(x, dim=1, keepdim=True)  # (M, 1) each
    scale = hi.clamp_(min=0).sub_(lo.clamp_(max=0)).clamp_(min=1e-12).div_(127.0)  # (M, 1)
    zero_point = torch.round(lo.neg_().div_(scale))  # (M, 1) in 0..127
    xu = torch.round(x / scale).add_(zero_point).clamp_(0, 127).to(torch.uint8)
    y = torch.ops.onednn.qlinear_pointwise(xu, 1.0, 0, layer.packed, layer.weight_scale, layer.packed_zero_points,
                                           None, 1.0, 0, torch.float32, "none", [], "")  # sum(xu w) * w_scale
    y = y.mul_(scale) if layer.bias is None else torch.addcmul(layer.bias, y, scale)
    column_sums = layer.weight.float().sum(1) * layer.weight_scale  # (out,)
    return y.addr_(zero_point.mul_(scale).squeeze(1), column_sums, alpha=-1)  # less zero_point x column sums


def prepare(translator: Translator, variant: str) -> None:
    layers = [m for m in translator.model.modules() if isinstance(m, Int8Linear)]
    for m in layers:
        if variant == "int8-s8":
            m.packed = m.packed_zero_points = None
        elif variant in ("int8-signed", "int8-asym"):
            if m.packed is None:
                m.use_u8_kernel()
            m.nonnegative_input = False
            if variant == "int8-asym":
                m.forward = lambda x, m=m: asymmetric_forward(m, x.reshape(-1, m.in_features).float()).reshape(
                    *x.shape[:-1], m.out_features)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--variants", nargs="+", default=["fp32", "int8", "int8-signed", "int8-asym", "int8-s8"])
    args = p.parse_args()
    torch.set_num_threads(2)
    src, ref = read_split(parse_data_spec("multi30k"), "val", "en-fr", os.environ.get("MT_DATA_DIR"))
    for variant in args.variants:
        translator = Translator.from_pretrained(args.model, "cpu", precision=variant.split("-")[0])
        prepare(translator, variant)
        options = replace(translator.defaults, beam=4, batch_size=64)
        start = time.perf_counter()
        hyps = [n_best[0].text for n_best in translator.translations(src, options)]
        seconds = time.perf_counter() - start
        scores = score_translations(hyps, ref)
        print(json.dumps({"variant": variant, "val_bleu": round(scores["bleu"], 2), "val_chrf": round(scores["chrf"], 2),
                          "seconds": round(seconds, 1)}), flush=True)


if __name__ == "__main__":
    main()
