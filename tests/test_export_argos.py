"""`mt export --to argos`: a `.argosmodel` package that Argos Translate itself (argostranslate,
installed by the test set-up, in a subprocess with its data, cache and package folders in a
temporary directory) installs and translates with as mt does, offline: its sentences are
split by the spaCy pipeline the package carries (`ARGOS_CHUNK_TYPE=SPACY`).

Argos searches with beam `ARGOS_BEAM_SIZE` and a fixed length penalty of 0.2; mt is run with
the same, its repetition guard and case handling off. Argos's compute type "auto" runs a
float32 package in CTranslate2's fastest type (int8 on this machine): set to "default" here. Argos decodes up to 256 tokens where
mt stops at its model's positions, so a runaway output may differ: 99% must be the same."""
import json
import os
import re
import subprocess
import sys
import zipfile

import pytest

from machine_translation.base.options import SearchOptions
from machine_translation.inference.translate import Translator
from tests.conftest import multi30k_lines
from tests.test_export import mt

pytest.importorskip("argostranslate", reason="the Argos tests need argostranslate: make install")
VAL = multi30k_lines("en", 200, start=29000 - 200)  # held out by the `learned` fixture (the first 6,000 lines)
PARAGRAPHS = ["A dog runs on the beach. A man throws a ball.", "Two girls are smiling. They sit on a bench."]
ARGOS = """
import json, sys
from argostranslate import package, translate
package.install_from_path(sys.argv[1])
(pair,) = [p for p in package.get_installed_packages()]
texts = json.load(sys.stdin)
print(json.dumps({"from": pair.from_code, "to": pair.to_code, "to_name": pair.to_name,
                  "out": [translate.translate(t, "en", "fr") for t in texts]}))
"""


def argos_translate(package, texts, home, beam=4):
    """Argos Translate's translations of `texts` with `package` installed in a fresh `home`."""
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache"),
           "XDG_CONFIG_HOME": str(home / "config"), "ARGOS_PACKAGES_DIR": str(home / "packages"),
           "ARGOS_CHUNK_TYPE": "SPACY", "ARGOS_BEAM_SIZE": str(beam), "ARGOS_INTRA_THREADS": "1",
           "ARGOS_COMPUTE_TYPE": "default"}  # (Argos's "auto" would run this float32 model in int8 here)
    r = subprocess.run([sys.executable, "-c", ARGOS, str(package)], input=json.dumps(texts), env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def argos_package(learned, tmp_path_factory):
    out = tmp_path_factory.mktemp("argos") / "en_fr.argosmodel"
    r = mt("export", learned[0], "--to", "argos", "--out", out)
    assert r.exit_code == 0, r.output
    return learned[0], out


def test_argos_installs_the_package_and_translates_as_mt_does(argos_package, tmp_path):
    source, package = argos_package
    translator = Translator.from_pretrained(source, "cpu")
    options = SearchOptions(beam=4, length_penalty=0.2, max_len_a=0.0, max_len_b=63, repeat_guard=False,
                            normalize_case=False)
    ours = [n[0].text for n in translator.translations(VAL + [s for p in PARAGRAPHS for s in re.split(r"(?<=\.) ", p)], options)]
    theirs = argos_translate(package, VAL + PARAGRAPHS, tmp_path)
    assert (theirs["from"], theirs["to"], theirs["to_name"]) == ("en", "fr", "French")
    differ = [(s, o, t) for s, o, t in zip(VAL, ours, theirs["out"]) if o != t]
    assert len(differ) <= 2, differ
    # a paragraph: split into its sentences by the package's own spaCy pipeline (no download
    # here), each translated as mt translates it alone
    ours_split = iter(ours[len(VAL):])
    for paragraph, got in zip(PARAGRAPHS, theirs["out"][len(VAL):]):
        assert got == f"{next(ours_split)} {next(ours_split)}", paragraph


def test_the_package_is_what_argos_reads(argos_package):
    _, package = argos_package
    with zipfile.ZipFile(package) as z:
        names = z.namelist()
        (folder,) = {n.split("/")[0] for n in names}
        metadata = json.loads(z.read(f"{folder}/metadata.json"))
        model = json.loads(z.read(f"{folder}/model/config.json"))
        record = json.loads(z.read(f"{folder}/mt_export.json"))
    assert folder == "translate-en_fr-1_0"
    assert {f"{folder}/sentencepiece.model", f"{folder}/model/model.bin", f"{folder}/spacy/config.cfg"} <= set(names)
    assert (metadata["from_code"], metadata["to_code"], metadata["from_name"]) == ("en", "fr", "English")
    assert metadata["package_version"] and metadata["argos_version"]
    assert model["add_source_eos"] is True  # Argos passes the pieces alone
    assert record["to"] == "argos" and any("0.2" in line for line in record["not_kept"])


def test_bad_packages_are_one_line_and_nothing_is_lost(argos_package, tmp_path):
    source, package = argos_package
    r = mt("export", source, "--to", "argos", "--out", tmp_path / "x.zip")
    assert r.exit_code == 2 and "*.argosmodel" in r.output and not (tmp_path / "x.zip").exists()
    mine = tmp_path / "mine.argosmodel"
    mine.write_bytes(b"a user's file")
    for extra in ([], ["--overwrite"]):
        r = mt("export", source, "--to", "argos", "--out", mine, *extra)
        assert r.exit_code == 2 and str(mine) in r.output and mine.read_bytes() == b"a user's file", r.output
    again = tmp_path / "again.argosmodel"
    again.write_bytes(package.read_bytes())
    r = mt("export", source, "--to", "argos", "--out", again)
    assert r.exit_code == 2 and "--overwrite" in r.output
    r = mt("export", source, "--to", "argos", "--out", again, "--overwrite", "--precision", "int8")
    assert r.exit_code == 0 and again.read_bytes() != package.read_bytes(), r.output
    r = mt("export", source, "--to", "argos", "--out", tmp_path / "y.argosmodel", "--precision", "int4")
    assert r.exit_code == 2 and "--precision int4" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.argosmodel", "mine.argosmodel"]


def test_argos_export_needs_spacy(argos_package, tmp_path, monkeypatch):
    source, _ = argos_package
    monkeypatch.setitem(sys.modules, "spacy", None)  # as if not installed
    r = mt("export", source, "--to", "argos", "--out", tmp_path / "p.argosmodel")
    assert r.exit_code == 2 and "pip install 'mt[argos]'" in r.output and not list(tmp_path.iterdir())
