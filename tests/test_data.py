"""The data layer: named corpora from a data dir, the real download code against a loopback
HTTP server, the offline message, hf: datasets in the translation schema, either direction."""
import functools
import http.server
import threading

import numpy as np
import pytest

from machine_translation.data import corpora
from machine_translation.data.sources import BUCKET_WIDTH, bucket_bounds, parse_data_spec, read_split, token_batches
from machine_translation.base.errors import DataError


def test_named_corpus_from_data_dir_both_directions(shared_data):
    spec = parse_data_spec(None, pair="en-fr")
    en, fr = read_split(spec, "val", "en-fr", shared_data)
    fr2, en2 = read_split(spec, "val", "fr-en", shared_data)
    assert len(en) == len(fr) == 1014 and en == en2 and fr == fr2
    assert en[0] != fr[0]


def test_absent_split_is_one_clear_line(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MT_MULTI30K_URL", "http://127.0.0.1:9/none")  # nothing listens on port 9
    with pytest.raises(DataError) as e:
        read_split(parse_data_spec("multi30k"), "test_2018_flickr", "en-fr", shared_data)
    message = str(e.value)
    assert "test_2018_flickr.en.gz" in message and "put the file in" in message and "\n" not in message
    with pytest.raises(DataError, match="has no split 'test_2019'"):
        read_split(parse_data_spec("multi30k"), "test_2019", "en-fr", shared_data)


@pytest.fixture
def mirror(shared_data):
    """The Multi30k files served over HTTP on loopback, as the official host serves them."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shared_data / "multi30k"))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_into_the_cache(mirror, tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MT_MULTI30K_URL", mirror)
    monkeypatch.delenv("MT_DATA_DIR", raising=False)
    en, fr = read_split(parse_data_spec("multi30k"), "test_2016_flickr", "en-fr", data_dir=None)
    cached = tmp_path / "cache/mt/data/multi30k/test_2016_flickr.en.gz"
    assert cached.is_file() and len(en) == len(fr) == 1000
    assert cached.read_bytes() == (shared_data / "multi30k/test_2016_flickr.en.gz").read_bytes()
    monkeypatch.setenv("MT_MULTI30K_URL", "http://127.0.0.1:9/none")  # now offline: the cache serves
    assert read_split(parse_data_spec("multi30k"), "test_2016_flickr", "en-fr", None)[0] == en
    with pytest.raises(DataError, match="HTTP 404"):
        monkeypatch.setenv("MT_MULTI30K_URL", mirror)
        read_split(parse_data_spec("multi30k"), "test_2018_flickr", "en-fr", None)


def test_hf_translation_dataset_offline(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rows = [{"translation": {"en": f"a dog {i}", "fr": f"un chien {i}"}} for i in range(20)]
    d = tmp_path / "hfdata" / "data"
    d.mkdir(parents=True)
    datasets.Dataset.from_list(rows).to_parquet(str(d / "train-00000-of-00001.parquet"))
    datasets.Dataset.from_list(rows[:5]).to_parquet(str(d / "validation-00000-of-00001.parquet"))
    spec = parse_data_spec(f"hf:{tmp_path / 'hfdata'}")
    assert spec.kind == "hf"
    src, tgt = read_split(spec, "train", "fr-en")
    assert src[3] == "un chien 3" and tgt[3] == "a dog 3" and len(src) == 20
    assert len(read_split(spec, "val", "en-fr")[0]) == 5
    with pytest.raises(DataError, match="no language 'de'"):
        read_split(spec, "train", "en-de")


def test_bad_specs(tmp_path):
    with pytest.raises(DataError, match="--src and --tgt go together"):
        parse_data_spec(None, src=tmp_path / "a")
    with pytest.raises(DataError, match="not a named corpus"):
        parse_data_spec("nowhere.tsv")
    tsv = tmp_path / "p.tsv"
    tsv.write_text("a\tb\nc d e\n", encoding="utf-8")
    with pytest.raises(DataError, match="p.tsv line 2: expected 2 tab-separated columns"):
        read_split(parse_data_spec(str(tsv)), "train", "en-fr")
    gz = tmp_path / "x.gz"
    gz.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="not a readable gzip file"):
        corpora.read_lines(gz)


def test_token_batches_respect_the_budget_and_repeat():
    lengths = np.array([3, 50, 7, 7, 20, 12, 3, 49, 8] * 20)
    as_lists = lambda batches: [(b.length, b.indices.tolist()) for b in batches]  # noqa: E731
    a = as_lists(token_batches(lengths, 120, seed=1, epoch=0))
    assert a == as_lists(token_batches(lengths, 120, seed=1, epoch=0))
    assert a != as_lists(token_batches(lengths, 120, seed=1, epoch=1))
    assert sorted(i for _, b in a for i in b) == list(range(len(lengths)))
    assert all(len(b) % 8 == 0 or len(b) > 8 for _, b in a)  # at least 8 sentences; a bucket's rest joins a batch
    over = [(L, b) for L, b in a if L * len(b) > 120]
    assert all(len(b) < 16 for _, b in over)  # over budget only to reach the minimum of 8 sentences
    big = token_batches(lengths, 4000, seed=1, epoch=0)
    assert all(b.length * len(b.indices) <= 4000 for b in big)


def test_batches_come_in_a_few_fixed_shapes_each_example_in_its_smallest_bucket():
    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(4, 40, 5000), [97, 120]])  # two outliers, too few for a bucket
    bounds = bucket_bounds(lengths)
    assert bounds.tolist() == sorted(bounds.tolist()) and bounds[-1] == 120
    assert all(b % BUCKET_WIDTH == 0 for b in bounds)
    shapes = set()
    for epoch in range(3):
        batches = token_batches(lengths, 1000, seed=5, epoch=epoch)
        assert sorted(i for b in batches for i in b.indices) == list(range(len(lengths)))
        for b in batches:
            smallest = bounds[np.searchsorted(bounds, lengths[b.indices])]  # (B,) the bound each example needs
            assert (smallest == b.length).all()
        shapes |= {(len(b.indices), b.length) for b in batches}
    # one full shape per bucket plus at most one remainder shape: the same set every epoch
    assert len(shapes) <= 2 * len(bounds)
    assert len({b for _, b in shapes}) == len(bounds) <= (40 // BUCKET_WIDTH) + 1
    assert 97 in lengths and 120 in bounds and 98 not in bounds  # the two outliers share the last bucket
