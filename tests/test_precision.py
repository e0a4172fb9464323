"""Inference precisions: int8 and bf16 translate close to float32, a quantized model
directory translates exactly like on-the-fly int8, batch equals single in every precision,
and the impossible choices are refused in one line."""
import pytest
import sacrebleu
import torch
from typer.testing import CliRunner

from machine_translation.inference import precision
from machine_translation.cli import app
from machine_translation.base.errors import ConfigError
from machine_translation.base.options import SearchOptions
from machine_translation.inference.translate import Translator
from tests.conftest import write_lines

runner = CliRunner()


def mt(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *words):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    for word in words:
        assert word in result.output, result.output


@pytest.fixture(scope="module")
def int8_dir(learned, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "int8"
    r = mt("quantize", "--model", learned[0], "--out", out)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def sentences(slice_files):
    return slice_files[2][:40]


@pytest.fixture(scope="module")
def fp32_out(learned, sentences):
    return Translator.from_pretrained(learned[0], "cpu").translate(sentences, SearchOptions(beam=4))


# oneDNN's u8 int8 kernel runs on any x86 CPU (fast where it is chosen: x86 without VNNI), so
# both int8 kernels are tested here whichever one this CPU picks.
HAS_U8 = torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise")
NEEDS_U8 = pytest.mark.skipif(not HAS_U8, reason="this torch has no oneDNN u8 int8 kernel")


def use_kernel(model, kernel):
    """Put every Int8Linear of `model` on `kernel`: "s8" (`torch._int_mm`) or "u8" (oneDNN)."""
    from machine_translation.inference.kernels import Int8Linear
    for m in model.modules():
        if isinstance(m, Int8Linear):
            if kernel == "u8":
                m.use_u8_kernel()
            else:
                m.packed = m.packed_zero_points = None
    return model


@pytest.mark.parametrize("precision, kernel", [("int8", "s8"), pytest.param("int8", "u8", marks=NEEDS_U8),
                                               ("bf16", None)])
def test_reduced_precision_translates_close_to_float32(learned, sentences, fp32_out, precision, kernel):
    tr = Translator.from_pretrained(learned[0], "cpu", precision=precision)
    if kernel:
        use_kernel(tr.model, kernel)
    assert tr.precision == precision
    out = tr.translate(sentences, SearchOptions(beam=4))
    # the same model: most sentences come out the same, the rest close (BLEU against fp32's output)
    same = sum(a == b for a, b in zip(out, fp32_out))
    assert same >= 0.6 * len(sentences), (same, list(zip(out, fp32_out))[:5])
    assert sacrebleu.corpus_bleu(out, [fp32_out]).score > 70
    # batch equals single in this precision too
    assert out[:6] == [tr.translate([s], SearchOptions(beam=4))[0] for s in sentences[:6]]


@pytest.mark.parametrize("kernel, nonnegative", [("s8", False), pytest.param("u8", False, marks=NEEDS_U8),
                                                 pytest.param("u8", True, marks=NEEDS_U8)])
def test_int8_kernels_sum_exactly_and_each_row_alone(kernel, nonnegative):
    """Both kernels give the exact integer sums of the per-row quantized inputs, also where
    every product is at its largest (oneDNN's u8 x s8 instruction saturates 16-bit pair sums
    unless the inputs have 7 bits), and a row's result does not depend on its batch mates.
    A layer whose input is never negative (a ReLU's output) gives the u8 kernel 127 levels."""
    from machine_translation.inference.kernels import Int8Linear
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 300)
    layer = use_kernel(Int8Linear.from_float(linear, nonnegative_input=nonnegative), kernel)
    x = torch.randn(9, 256)
    x[0] = torch.sign(linear.weight[0]).detach() * 5  # row 0 x weight row 0: every product at its largest
    x[1] = 0  # an all-zero row
    if nonnegative:
        x = x.relu()
    y = layer(x)  # (9, 300)
    levels = 63 if kernel == "u8" and not nonnegative else 127
    x_scale = x.double().abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / levels
    exact = torch.round(x.double() / x_scale) @ layer.weight.double().t()  # integer sums, exact in float64
    expected = exact * layer.weight_scale.double() * x_scale + layer.bias.double()
    assert torch.allclose(y.double(), expected, rtol=1e-6, atol=1e-6)
    assert all(torch.equal(y[i : i + 1], layer(x[i : i + 1])) for i in range(9))
    assert (y - linear(x)).abs().max() < 0.05 * linear(x).abs().max()  # and close to the float layer


def test_the_weights_are_really_in_that_precision(learned):
    int8 = Translator.from_pretrained(learned[0], "cpu", precision="int8").model
    names = {type(m).__name__ for m in int8.modules()}
    assert "Linear" not in names and "Int8Linear" in names
    assert {b.dtype for n, b in int8.named_buffers() if n.endswith(".weight")} == {torch.int8}
    # the feed-forward's second layer reads ReLU's output, never negative; no other layer does
    assert {n.split(".")[-1] for n, m in int8.named_modules() if getattr(m, "nonnegative_input", False)} == {"down"}
    bf16 = Translator.from_pretrained(learned[0], "cpu", precision="bf16").model
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}


def test_a_quantized_directory_translates_exactly_like_int8_on_the_fly(learned, int8_dir, sentences, fp32_out):
    size = lambda d: (d / "model.safetensors").stat().st_size  # noqa: E731
    assert size(int8_dir) < 0.7 * size(learned[0])
    saved = Translator.from_pretrained(int8_dir, "cpu")  # int8 is the directory's own precision
    assert saved.precision == "int8" and saved.loaded.precision == "int8"
    on_the_fly = Translator.from_pretrained(learned[0], "cpu", precision="int8")
    opts = SearchOptions(beam=4)
    assert saved.translate(sentences, opts) == on_the_fly.translate(sentences, opts)


def test_int8_with_worker_processes(int8_dir, sentences, tmp_path):
    src = write_lines(tmp_path / "in.en", sentences[:16])
    one = mt("translate", "--model", int8_dir, "--input", src, "--batch-size", 4)
    two = mt("translate", "--model", int8_dir, "--input", src, "--batch-size", 4, "--workers", 2,
             "--precision", "int8")
    assert one.exit_code == two.exit_code == 0, two.output
    assert one.stdout == two.stdout and len(one.stdout.splitlines()) == 16


def test_evaluate_reports_its_precision(learned, tmp_path, shared_data):
    r = mt("evaluate", "--model", learned[0], "--split", "val", "--precision", "int8", "--beam", "1", "--json",
           "--save-dir", tmp_path, "--data-dir", shared_data)
    assert r.exit_code == 0, r.output
    assert '"precision": "int8"' in r.stdout and (tmp_path / "val.en-fr.beam1.int8.hyp").is_file()


def test_impossible_precisions_are_refused_in_one_line(learned, int8_dir, tmp_path):
    one_line_error(mt("translate", "--model", learned[0], "--precision", "fp8", "a cat"), "--precision", "int8")
    one_line_error(mt("translate", "--model", int8_dir, "--precision", "fp32", "a cat"), "int8", "float32")
    one_line_error(mt("quantize", "--model", int8_dir, "--out", tmp_path / "again"), "already int8")
    one_line_error(mt("quantize", "--model", learned[0], "--out", int8_dir), "not empty")
    one_line_error(mt("quantize", "--model", learned[0], "--out", tmp_path / "b", "--precision", "bf16"), "bf16")
    one_line_error(mt("average-checkpoints", "--model", int8_dir, "--last", "1", "--out", tmp_path / "avg"), "int8")
    corpus = write_lines(tmp_path / "c.en", ["a cat"] * 20), write_lines(tmp_path / "c.fr", ["un chat"] * 20)
    for flags in (["--init-from", int8_dir, "--out", tmp_path / "new"], ["--resume", "--out", int8_dir]):
        one_line_error(mt("train", "--src", corpus[0], "--tgt", corpus[1], *flags, "--max-steps", 1),
                       "int8", "cannot be trained")


def test_a_language_model_is_not_quantized(tmp_path):
    from machine_translation.model.directory import save_pretrained
    from machine_translation.model.transformer import ModelConfig, build_model
    from mt_tokenizers import CharTokenizer
    tok = CharTokenizer.train(["to be or not to be"])
    config = ModelConfig.from_preset("tiny", "lm", tok.vocab_size)
    save_pretrained(tmp_path / "lm", build_model(config), config, tok, tok)
    one_line_error(mt("quantize", "--model", tmp_path / "lm", "--out", tmp_path / "q"), "language model")
    assert not (tmp_path / "q").exists()


def test_the_precision_plan_follows_the_hardware(monkeypatch, caplog):
    """One decision for every path (`precision.resolve`): auto follows the CPU's bf16 support,
    impossible combinations are one line naming the flag, an int8 directory stays int8 and on
    CPU, and the kernels are chosen for this machine's CPU, inference only."""
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert precision.resolve("auto", cpu, training=True).precision == "bf16"
    assert precision.resolve(None, cpu, training=True).autocast_dtype == torch.bfloat16
    assert precision.resolve("bf16", cpu).precision == "bf16" and not caplog.records
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert precision.resolve("auto", cpu, training=True).precision == "bf16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    assert precision.resolve("auto", cpu, training=True).precision == "fp32"
    assert precision.resolve("bf16", cpu).precision == "bf16"  # runs, with a warning
    assert "slow" in caplog.text
    assert precision.resolve("int8", cpu).onednn_u8  # AVX2 without VNNI: oneDNN's u8 kernel
    assert not precision.resolve("int8", cpu, training=False).onednn_fp32
    assert precision.resolve(None, cpu, stored="int8").precision == "int8"
    for requested, device in (("int8", cuda), ("int8", mps), ("fp16", cpu), ("fp16", mps)):
        with pytest.raises(ConfigError, match=requested):
            precision.resolve(requested, device, training=requested == "fp16")
    with pytest.raises(ConfigError, match="choose one of"):
        precision.resolve("auto", cpu)  # inference has no auto
    with pytest.raises(ConfigError, match="choose one of"):
        precision.resolve("int8", cpu, training=True)  # training has no int8
    with pytest.raises(ConfigError, match="DIR is an int8 model.*--precision int8"):
        precision.resolve("fp32", cpu, stored="int8", model="DIR")
    with pytest.raises(ConfigError, match="DIR is an int8 model.*CPU only"):
        precision.resolve(None, cuda, stored="int8", model="DIR")


def test_onednn_linears_compute_the_same_model(learned, sentences):
    """Float32 on AMD CPUs multiplies with oneDNN (`precision.onednn_fp32_is_faster`); forced
    here on any CPU: the same parameters, the same logits up to floating-point order, the
    same translations, batch equal to single, and gradients still flow in training."""
    from machine_translation.model.directory import load_pretrained
    from machine_translation.inference.kernels import OneDnnLinear, use_onednn
    cpu = torch.device("cpu")
    plain = Translator(load_pretrained(learned[0], cpu, task="mt"), cpu)  # a training run's validation: never swapped
    assert not any(isinstance(m, OneDnnLinear) for m in plain.model.modules())
    tr = Translator(load_pretrained(learned[0], cpu, task="mt"), cpu)
    use_onednn(tr.model)
    decoder = tr.model.decoder
    assert isinstance(decoder.lm_head, OneDnnLinear) and decoder.lm_head.weight is decoder.embed.token.weight
    assert tr.model.state_dict().keys() == plain.model.state_dict().keys()

    src, tgt = torch.randint(4, 200, (3, 9)), torch.randint(4, 200, (3, 7))
    with torch.inference_mode():
        assert torch.allclose(tr.model(src, tgt), plain.model(src, tgt), atol=1e-4)
    options = SearchOptions(beam=4)
    out, expected = tr.translate(sentences, options), plain.translate(sentences, options)
    assert sum(a == b for a, b in zip(out, expected)) >= 0.9 * len(sentences), list(zip(out, expected))
    assert out[:6] == [tr.translate([s], options)[0] for s in sentences[:6]]

    tr.model.train()
    tr.model(src, tgt).sum().backward()  # with gradients wanted it is F.linear
    assert decoder.lm_head.weight.grad is not None and decoder.blocks[0].ff.up.weight.grad.abs().sum() > 0


def test_the_int8_kernel_follows_the_hardware(learned, monkeypatch):
    """oneDNN's u8 kernel on x86 CPUs without VNNI or AMX, where `torch._int_mm` is a reference
    loop; `torch._int_mm` elsewhere. Translators get it when they load."""
    from machine_translation.inference.kernels import Int8Linear
    cpu = torch.device("cpu")
    for flags, chosen in (({"avx2", "fma"}, HAS_U8), ({"avx2", "avx512f"}, HAS_U8), ({"avx2", "avx512_vnni"}, False),
                          ({"avx2", "avx_vnni"}, False), ({"avx2", "amx_int8"}, False), ({"asimd"}, False)):
        monkeypatch.setattr(precision, "cpu_flags", lambda f=frozenset(flags): f)
        assert precision.onednn_u8_int8(cpu) == chosen, flags
        assert not precision.onednn_u8_int8(torch.device("cuda"))
        layers = [m for m in Translator.from_pretrained(learned[0], "cpu", precision="int8").model.modules()
                  if isinstance(m, Int8Linear)]
        assert layers and all((m.packed is not None) == chosen for m in layers), flags


def test_onednn_is_chosen_for_float32_on_amd_cpus_only(monkeypatch):
    cpu = torch.device("cpu")
    for vendor, chosen in (("AuthenticAMD", torch.backends.mkldnn.is_available()), ("GenuineIntel", False), ("", False)):
        monkeypatch.setattr(precision, "_cpuinfo", lambda: {"vendor_id": vendor} if vendor else {})
        assert precision.onednn_fp32_is_faster(cpu) == chosen
        assert not precision.onednn_fp32_is_faster(torch.device("cuda"))
