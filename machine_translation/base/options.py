"""Every setting a user chooses, each with its one default: the training run (`RunOptions`,
`TrainConfig`), translation search (`SearchOptions`) and language-model sampling
(`SamplingOptions`). The CLI's flags default to these values, the library's functions take
these objects, and a model directory's `generation_config.json` records a model's own
search settings (`MODEL_KEYS`), which override the defaults here.

Imports nothing heavy (no torch), so `mt --help` shows the defaults in a blink.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar

from machine_translation.base.errors import ConfigError, check_finite
from machine_translation.base.fields import type_errors

DEFAULT_MAX_MINUTES = 60.0  # the training budget when no budget is given
DEFAULT_PAIR = "en-fr"
DEFAULT_MODELS = Path("models")  # models/<pair> is where `mt train` writes and `mt translate` looks
# Fewer warmup steps than this with post-norm (the small translation preset) get a warning: at
# lr 2e-3 the demo's model collapsed with 100 (every sentence translated alike), not with 200.
POST_NORM_WARMUP = 200
# Subword regularisation of translation runs (TrainConfig.subword_alpha's default): at the default
# 60 minutes it validated +1.02 BLEU over none (docs/benchmarks.md, Why the defaults are what they are); it slows learning in short
# runs (-2.05 at 1,000 steps), so the 8-minute demo turns it off.
SUBWORD_ALPHA = 0.1
STOPPING_RULES = ("mt", "transformers")  # SearchOptions.stopping
MAX_BEAM = 1024  # the widest beam a search takes (also capped by the vocabulary, checked by the Translator)


@dataclass(frozen=True)
class DataSpec:
    """What `--data NAME|PATH|hf:NAME[:CONFIG]` or `--src FILE --tgt FILE` names."""

    kind: str  # "named", "tsv", "files", "hf", "text"
    name: str = ""  # corpus name, file path, or HF dataset name
    config: str | None = None  # HF dataset config
    src_file: Path | None = None
    tgt_file: Path | None = None

    def describe(self) -> str:
        if self.kind == "files":
            return f"{self.src_file} + {self.tgt_file}"
        return f"hf:{self.name}" + (f":{self.config}" if self.config else "") if self.kind == "hf" else self.name


@dataclass
class TrainConfig:
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 300
    weight_decay: float = 0.01
    # The tied embedding (also the output layer) has no weight decay unless this is set, as in
    # fairseq; Hugging Face's Marian decays it (its name, `shared`, is not matched as an embedding).
    decay_embeddings: bool = False
    beta2: float = 0.98
    label_smoothing: float = 0.1
    # Subword regularisation: each training sentence is segmented anew by sampling from the
    # SentencePiece model, sharpened by this alpha (0: off; validation is never sampled).
    # None: SUBWORD_ALPHA for a translation run whose tokenizer can sample, else off.
    subword_alpha: float | None = None
    clip_norm: float = 1.0
    grad_accum: int = 1
    max_steps: int | None = None
    max_minutes: float | None = None
    epochs: float | None = None
    eval_every: int = 500
    save_every: int = 500
    keep_last: int = 4
    # At the end, the mean of the last K periodic checkpoints (at most keep_last) is validated,
    # and it becomes the model of the run if it scores better than the best single checkpoint
    # (0 or 1: off).
    average_last: int = 4
    patience: int | None = None
    log_every: int = 20
    seed: int = 1234
    max_nonfinite: int = 5
    # auto|fp32|bf16|fp16 (runtime.TRAIN_PRECISIONS), resolved by runtime.check_precision: bf16
    # and fp16 are autocast over float32 master weights and optimizer state.
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.max_steps is None and self.max_minutes is None and self.epochs is None:
            raise ConfigError("give a budget: max_steps, max_minutes or epochs")
        check_finite("lr", self.lr, 0, low_open=True)
        check_finite("clip_norm", self.clip_norm, 0, low_open=True)  # clipping is always on: no "0 = off"
        check_finite("weight_decay", self.weight_decay, 0)
        check_finite("label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        check_finite("min_lr_ratio", self.min_lr_ratio, 0, 1)
        check_finite("beta2", self.beta2, 0, 1, low_open=True, high_open=True)
        if self.subword_alpha is not None:
            check_finite("subword_alpha", self.subword_alpha, 0)
        for name in ("max_minutes", "epochs"):
            if getattr(self, name) is not None:
                check_finite(name, getattr(self, name), 0, low_open=True)
        for name, low in (("warmup_steps", 0), ("grad_accum", 1), ("eval_every", 1), ("save_every", 1),
                          ("keep_last", 1), ("average_last", 0), ("log_every", 1), ("max_nonfinite", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least {low}")
        for name in ("max_steps", "patience"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        check_seed(self.seed)


def check_seed(seed: int) -> None:
    """A seed PyTorch and NumPy both take: 0 .. 2**63 - 1."""
    if not 0 <= seed < 2**63:
        raise ConfigError(f"--seed {seed}: must be between 0 and {2**63 - 1}")



@dataclass
class RunOptions:
    """Everything `mt train` was asked to do (the CLI parses its flags into this)."""

    out: Path
    task: str = "mt"  # or "lm"
    pair: str = DEFAULT_PAIR
    data: DataSpec | None = None
    data_dir: str | None = None
    preset: str = "small"
    model_overrides: dict = field(default_factory=dict)  # only the flags the user gave
    vocab_size: int = 8000
    batch_tokens: int = 2500  # vs 4,000: +0.40/+0.69 val BLEU at 60 min (2 seeds), +6 at 14 (docs/benchmarks.md, Why the defaults)
    max_len: int = 100  # pairs with a side longer than this (in tokens) are skipped
    tokenizer_sample: int = 200_000  # pairs the joint SentencePiece model is trained on (a uniform sample)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_minutes=DEFAULT_MAX_MINUTES))
    resume: bool = False
    overwrite: bool = False
    init_from: Path | None = None
    device: str | None = None
    threads: int | None = None
    # language modelling
    tokenizer: str = "char"  # or "sentencepiece"
    block_size: int | None = None  # default: the preset's max_positions
    batch_size: int = 12  # blocks per batch
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.task not in ("mt", "lm"):
            raise ConfigError(f"--task {self.task!r}: choose mt (translation) or lm (language model)")
        if self.tokenizer not in ("char", "sentencepiece"):
            raise ConfigError(f"--tokenizer {self.tokenizer!r}: choose char or sentencepiece")
        if self.resume and self.overwrite:
            raise ConfigError("--resume continues a run and --overwrite replaces it: choose one")
        if self.resume and self.init_from:
            raise ConfigError("--resume continues a run; --init-from starts a new one from a model: choose one")
        if self.train.subword_alpha and self.task != "mt":
            raise ConfigError("--subword-alpha samples SentencePiece segmentations of sentence pairs: it is for "
                              "--task mt")
        for name in ("vocab_size", "batch_tokens", "max_len", "tokenizer_sample", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        check_finite("val_fraction", self.val_fraction, 0, 1, low_open=True, high_open=True)


class _Options:
    """What both settings classes share: type-checked fields and `updated(**flags)`."""

    MODEL_KEYS: ClassVar[tuple[str, ...]]  # the settings a model directory may fix
    NEW_MODEL: ClassVar[dict]  # the settings `mt train` records for a new model, where they differ from the defaults

    def __post_init__(self) -> None:
        problems = type_errors(type(self), {f.name: getattr(self, f.name) for f in fields(self)})
        if problems:
            raise ConfigError(problems[0])

    def updated(self, **changes):
        """A copy with the given settings changed; None means "keep this one"."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def generation_config(self) -> dict:
        """What `generation_config.json` stores."""
        return {k: getattr(self, k) for k in self.MODEL_KEYS}


@dataclass(frozen=True)
class SearchOptions(_Options):
    """Translation search: beam size (1 = greedy), length penalty, output length limit, and
    per call the n-best list size and the batch size."""

    beam: int = 4
    length_penalty: float = 1.0  # scores are log-prob / (length + 1) ** length_penalty
    max_len_a: float = 1.5  # output may have up to a * source_tokens + b tokens
    max_len_b: int = 10
    n_best: int = 1
    batch_size: int = 64
    # Never emit a piece 4 times or a character 5 times in a row unless the source does. Off
    # here so that model directories without the setting translate as they always did;
    # `mt train` records it on for every new model (NEW_MODEL).
    repeat_guard: bool = False
    # Translate ALL-CAPS and Title-Case sentences in sentence case, and give ALL-CAPS ones back
    # in capitals (`casing`). Off here for the same reason; on for new models.
    normalize_case: bool = False
    # How a sentence's beam search ends (`search.beam_search`): "mt" (when K hypotheses have
    # ended) or "transformers" (Hugging Face's default rule: imported models search as their
    # reference does).
    stopping: str = "mt"
    # Never emit PAD (Marian models' generation config bans it; mt's own models never learn it).
    suppress_pad: bool = False
    MODEL_KEYS: ClassVar[tuple[str, ...]] = ("beam", "length_penalty", "max_len_a", "max_len_b", "repeat_guard",
                                             "normalize_case", "stopping", "suppress_pad")
    NEW_MODEL: ClassVar[dict] = {"repeat_guard": True, "normalize_case": True}  # what a newly trained model records beyond the defaults

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("beam", "n_best", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_len_a < 0 or self.max_len_b < 0:
            raise ConfigError("max_len_a and max_len_b must be at least 0")
        if self.beam > MAX_BEAM:
            raise ConfigError(f"--beam {self.beam}: at most {MAX_BEAM} (wider beams cost memory and time, and gain "
                              "nothing)")
        check_finite("length_penalty", self.length_penalty)
        check_finite("max_len_a", self.max_len_a, 0)
        if self.stopping not in STOPPING_RULES:
            raise ConfigError(f"stopping {self.stopping!r}: choose {' or '.join(STOPPING_RULES)}")
        if self.n_best > self.beam:
            raise ConfigError(f"n_best ({self.n_best}) cannot exceed the beam size ({self.beam})")


@dataclass(frozen=True)
class SamplingOptions(_Options):
    """Language-model sampling: temperature (0 = greedy), top-k (0 = off), nucleus mass top-p
    (1 = off; 0 keeps only the most likely token), and how many tokens to add."""

    temperature: float = 0.8
    top_k: int | None = 200
    top_p: float | None = None
    max_new_tokens: int = 300
    MODEL_KEYS: ClassVar[tuple[str, ...]] = ("temperature", "top_k", "top_p", "max_new_tokens")
    NEW_MODEL: ClassVar[dict] = {}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_finite("temperature", self.temperature, 0)
        if self.top_k is not None and self.top_k < 0:
            raise ConfigError(f"top_k must be at least 0 (0 = off), got {self.top_k}")
        if self.top_p is not None and not 0.0 <= self.top_p <= 1.0:
            raise ConfigError(f"top_p must be between 0 and 1, got {self.top_p}")
        if self.max_new_tokens < 0:
            raise ConfigError(f"max_new_tokens must be at least 0, got {self.max_new_tokens}")


@dataclass(frozen=True)
class TextOptions:
    """How a text is prepared for the model and put back together (`inference.pipeline`):
    split into sentences and joined around its own whitespace, and with its protected spans
    (placeholders, URLs, e-mail addresses, `terms`) passed through untouched. Off, each text
    is one sentence for the model, as a training corpus line is. `format="html"`: each text
    is an HTML page or fragment, its blocks translated and its tags kept (`text.markup`)."""

    FORMATS = ("text", "html")
    split_sentences: bool = True
    protect: bool = True
    terms: tuple[str, ...] = ()  # --do-not-translate FILE: passed through byte for byte
    format: str = "text"

    def __post_init__(self) -> None:
        if self.format not in self.FORMATS:
            raise ConfigError(f"--format {self.format}: use one of {', '.join(self.FORMATS)}")

    @property
    def active(self) -> bool:
        return self.split_sentences or self.protect or self.format != "text"


AS_IS = TextOptions(split_sentences=False, protect=False)  # each text one sentence, nothing protected


@dataclass(frozen=True)
class ServeOptions:
    """`mt serve`: where it listens, how it batches concurrent requests, and its limits."""

    host: str = "127.0.0.1"  # loopback only unless the user opens it
    port: int = 5000  # LibreTranslate's port; 0 picks a free one
    max_batch_tokens: int = 4096  # source tokens per batch, padding included
    max_batch_sentences: int = 128
    batch_delay_ms: float = 5.0  # how long a batch waits for more sentences after its first
    queue_size: int = 2048  # sentences waiting per model; beyond it, 503 with Retry-After (a request larger: 413)
    request_timeout: float = 60.0  # seconds; beyond it, 503
    char_limit: int = 5000  # characters per request (all of q), as LibreTranslate's --char-limit
    batch_limit: int = 64  # items in a list q
    max_body_bytes: int = 1_000_000  # beyond it, 413
    max_beam: int = 8  # `alternatives` and `beam` may raise the beam up to this
    rate_limit: int = 0  # requests per minute per API key or client address; 0 = off
    api_keys: Path | None = None  # a file of keys, one a line, each optionally with its own requests per minute
    cors_origins: tuple[str, ...] = ("*",)
    # for the open internet (docs/serving.md): every connection and request is bounded in time
    header_timeout: float = 10.0  # seconds from a connection's start (or its last answer) to a whole request head
    body_timeout: float = 30.0  # seconds to read a request's body; beyond it, 408 and the connection closes
    keep_alive_timeout: float = 5.0  # seconds an idle keep-alive connection stays open (uvicorn's)
    max_connections: int = 256  # open connections and requests at once (uvicorn's limit_concurrency); beyond: 503
    forwarded_allow_ips: str = "127.0.0.1"  # proxies whose X-Forwarded-For names the client (rate limits, logs)
    log_format: str = "text"  # or "json": one object a line, for log shippers
    access_log: bool = True  # a line per request at INFO
    suggestions: Path | None = None  # /suggest appends users' corrections here (JSON lines); None: off (403)
    metrics: bool = False  # /metrics (Prometheus text)
    metrics_token: str | None = None  # with it, /metrics needs `Authorization: Bearer TOKEN`
    # /translate_file (documents): uploads up to max_file_bytes (other requests: max_body_bytes);
    # translated files kept in memory file_ttl seconds, file_store_bytes in all (the oldest go first)
    files_translation: bool = True
    max_file_bytes: int = 10_000_000
    file_ttl: float = 1800.0
    file_store_bytes: int = 200_000_000

    def __post_init__(self) -> None:  # types are the CLI's (typer) or the caller's
        for name in ("max_batch_tokens", "max_batch_sentences", "queue_size", "char_limit", "batch_limit",
                     "max_body_bytes", "max_beam", "max_file_bytes", "file_store_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535, got {self.port}")
        if self.batch_delay_ms < 0 or self.request_timeout <= 0 or self.rate_limit < 0:
            raise ConfigError("batch_delay_ms and rate_limit must be at least 0, request_timeout above 0")
        for name in ("header_timeout", "body_timeout", "keep_alive_timeout", "file_ttl"):
            if not 0 < getattr(self, name) < float("inf"):
                raise ConfigError(f"{name} must be a number of seconds above 0, got {getattr(self, name)}")
        if self.max_connections < 1:
            raise ConfigError(f"max_connections must be at least 1, got {self.max_connections}")
        if self.metrics_token is not None and not self.metrics:
            raise ConfigError("--metrics-token is the token of --metrics: add --metrics, or drop the token")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format must be text or json, got {self.log_format!r}")
