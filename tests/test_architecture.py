"""Holds the one-way dependency direction of the packages and of the application's groups by
reading every module's imports, and the size of the rooms.

tokenizers and encoder_transformer import none of the others; decoder imports only
encoder_transformer; nothing imports machine_translation. Inside machine_translation, every
module sits in a group (base, text, model, data, inference, training, interchange, serve, cli) and
imports only the groups below it: inference never reaches training, only the CLI imports the
CLI. No library file is over 400 lines, no function over 50, and the library never prints.
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
# The application's groups, bottom to top, and the groups each may import (itself included).
GROUPS = {
    "base": {"base"},
    "text": {"base", "text"},
    "model": {"base", "model"},
    "data": {"base", "data"},
    "inference": {"base", "text", "model", "data", "inference"},
    "training": {"base", "text", "model", "data", "inference", "training"},
    "interchange": {"base", "model", "data", "inference", "interchange"},
    "serve": {"base", "text", "model", "data", "inference", "serve"},
    "cli": {"base", "text", "model", "data", "inference", "training", "interchange", "serve", "cli"},
}
TOP_LEVEL = {"machine_translation", "machine_translation.__main__"}  # the package's lazy API and `python -m`
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 50


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


def group(module: str) -> str | None:
    """`machine_translation.inference.search` -> "inference" (None outside a group)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "machine_translation" and parts[1] in GROUPS else None


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


def test_every_module_is_in_a_group():
    loose = sorted(name for name in app_modules() if name not in TOP_LEVEL and group(name) is None)
    assert not loose, f"modules outside the groups of machine_translation: {loose}"


def group_violations(modules: dict[str, Path]) -> list[str]:
    found = []
    for name, path in modules.items():
        if group(name) is None:
            continue
        for imported in imports(path):
            target = group(imported)
            if target is not None and target not in GROUPS[group(name)]:
                found.append(f"{name} ({group(name)}) imports {imported} ({target})")
    return sorted(set(found))


def test_groups_import_in_their_direction():
    violations = group_violations(app_modules())
    assert not violations, "\n".join(violations)


def test_inference_does_not_import_training():
    modules = app_modules()
    training = {name for name in modules if group(name) == "training"}
    for start in ("machine_translation.inference.translate", "machine_translation.inference.generate",
                  "machine_translation.inference.search", "machine_translation.model.directory",
                  "machine_translation.serve.server", "machine_translation.serve.app"):
        reached = reachable(start, modules)
        assert start in reached and not reached & training, (start, sorted(reached & training))


def long_functions(path: Path) -> list[str]:
    """Functions whose body (from the first statement after the docstring) is over
    MAX_FUNCTION_LINES lines; a typer command's option list is its signature, so it is free."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]
            length = body[-1].end_lineno - body[0].lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{node.lineno} "
                             f"{node.name} ({length} lines)")
    return found


def library_files() -> list[Path]:
    return [p for folder in PACKAGES.values() for p in folder.rglob("*.py")]


def test_rooms_fit_their_job():
    """No library file over 400 lines, no function over 50 (STYLE.md: readable in one sitting)."""
    big = [f"{p.relative_to(REPO)} ({n} lines)" for p in library_files()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES]
    long = [f for p in library_files() for f in long_functions(p)]
    assert not big and not long, "\n".join(big + long)


def prints(path: Path) -> list[int]:
    """Lines of `print(...)` calls and of writes to sys.stdout/sys.stderr."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id == "print":
            found.append(node.lineno)
        elif isinstance(node.func, ast.Attribute) and node.func.attr == "write" and "sys.std" in ast.unparse(node):
            found.append(node.lineno)
    return found


def test_the_library_never_prints():
    """Only the CLI prints and chooses what goes to stdout; the library logs."""
    offenders = [f"{name}:{line}" for name, path in app_modules().items()
                 if group(name) != "cli" and name not in TOP_LEVEL for line in prints(path)]
    assert not offenders, offenders


def test_checker_sees_violations(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("from machine_translation.model.transformer import ModelConfig\nimport decoder.cache\n"
                   "print('x')\n")
    assert imported_packages(bad) == {"machine_translation", "decoder"}
    assert prints(bad) == [3]
    upward = {"machine_translation.base.m": bad}
    assert group_violations(upward)[0] == ("machine_translation.base.m (base) imports "
                                           "machine_translation.model.transformer (model)")
    long = tmp_path / "long.py"
    long.write_text('def f():\n    """doc"""\n' + "    x = 1\n" * (MAX_FUNCTION_LINES + 1))
    assert len(long_functions(long)) == 1
    assert "machine_translation.training.trainer" in reachable("machine_translation.training.runs", app_modules())


def test_every_package_is_installed():
    """pyproject.toml lists the packages a wheel holds: each folder with an __init__.py."""
    import tomllib
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {module_name(p) for p in APP.rglob("__init__.py")} | {"encoder_transformer", "decoder", "mt_tokenizers"}
    assert listed == found, (sorted(found - listed), sorted(listed - found))
