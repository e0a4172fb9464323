"""Holds the one-way dependency direction of the packages by reading every module's imports.

tokenizers and encoder_transformer import none of the others; decoder imports only
encoder_transformer; nothing imports machine_translation.
"""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {
    "encoder_transformer": REPO / "encoder_transformer",
    "decoder": REPO / "decoder",
    "mt_tokenizers": REPO / "tokenizers" / "mt_tokenizers",
    "machine_translation": REPO / "machine_translation",
}
ALLOWED = {
    "encoder_transformer": {"encoder_transformer"},
    "mt_tokenizers": {"mt_tokenizers"},
    "decoder": {"decoder", "encoder_transformer"},
    "machine_translation": set(PACKAGES),
}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


def test_dependency_direction():
    violations = []
    for package, folder in PACKAGES.items():
        files = list(folder.rglob("*.py"))
        assert files, f"no modules found for {package}"
        for path in files:
            bad = imported_packages(path) - ALLOWED[package]
            if bad:
                violations.append(f"{path.relative_to(REPO)} imports {sorted(bad)}")
    assert not violations, "\n".join(violations)


def test_checker_sees_violations(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("from machine_translation.model import ModelConfig\nimport decoder.cache\n")
    assert imported_packages(bad) == {"machine_translation", "decoder"}
