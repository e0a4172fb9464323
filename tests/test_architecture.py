"""Holds the one-way dependency direction of the packages by reading every module's imports.

tokenizers and encoder_transformer import none of the others; decoder imports only
encoder_transformer; nothing imports machine_translation. Inside machine_translation, only
the CLI imports the CLI, and the inference path (translation, generation) never reaches the
training modules.
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
APP = REPO / "machine_translation"
TRAINING_MODULES = {"machine_translation.training", "machine_translation.tasks", "machine_translation.runs",
                    "machine_translation.loss", "machine_translation.store", "machine_translation.distributed"}


def imports(path: Path) -> set[str]:
    """Every module name an import statement of `path` names (absolute imports only)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def imported_packages(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imports(path)} & set(PACKAGES)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def app_modules() -> dict[str, Path]:
    return {module_name(p): p for p in APP.rglob("*.py")}


def reachable(start: str, modules: dict[str, Path]) -> set[str]:
    """Application modules `start` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in modules:
            continue
        seen.add(name)
        todo += [m for m in imports(modules[name]) if m in modules]
    return seen


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


def test_only_the_cli_imports_the_cli():
    modules = app_modules()
    entry_points = ("machine_translation.cli", "machine_translation.__main__")  # `python -m machine_translation` runs the CLI
    outside = {name: path for name, path in modules.items() if not name.startswith(entry_points)}
    offenders = [name for name, path in outside.items()
                 if any(m == "machine_translation.cli" or m.startswith("machine_translation.cli.")
                        for m in imports(path))]
    assert not offenders and "machine_translation.cli.app" in modules


def test_inference_does_not_import_training():
    modules = app_modules()
    for start in ("machine_translation.translate", "machine_translation.generate", "machine_translation.search",
                  "machine_translation.checkpoint", "machine_translation.serve.server", "machine_translation.serve.app"):
        reached = reachable(start, modules)
        assert start in reached and not reached & TRAINING_MODULES, (start, sorted(reached & TRAINING_MODULES))


def test_checker_sees_violations(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("from machine_translation.model import ModelConfig\nimport decoder.cache\n")
    assert imported_packages(bad) == {"machine_translation", "decoder"}
    assert "machine_translation.training" in reachable("machine_translation.runs", app_modules())
