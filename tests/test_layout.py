"""The package's shape: which layer may import which, and no import cycles (function-level imports too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Import name -> folder, as pyproject.toml maps them.
PACKAGES = {
    "runtime": "runtime",
    "train": "train",
    "export": "export",
    "cli": "cli",
    "serve": "serve",
    "bench": "bench",
}
#: The cli modules that share options and console handling rather than define commands.
CLI_SHARED = ("__init__", "options", "console")
#: The most lines a cli function other than a command may have: longer logic belongs to a library layer.
CLI_HELPER_LINES = 70


def _package(path: Path) -> str:
    """Return the import name of the package a file of ours lies in (runtime/folders/x.py -> digitvae.runtime.folders)."""
    return ".".join(("digitvae", *path.parent.relative_to(ROOT).parts))


def _module_name(path: Path) -> str:
    return _package(path) if path.stem == "__init__" else f"{_package(path)}.{path.stem}"


def _files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Return every module a file imports, at any depth, relative imports resolved.

    A string literal that names one of our modules (a lazily imported command, say) counts too.
    """
    return _imports_in(ast.parse(path.read_text(encoding="utf-8")), _package(path))


def _imports_in(tree: ast.AST, package: str) -> set[str]:
    """Return every module the code of `tree`, a file of `package`, imports (see _imports)."""
    found: set[str] = set()
    for node in _executed(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            # `from . import x` imports the sibling module x, not the package's __init__ again.
            if node.module or not node.level:
                found.add(base)
            # `from . import x` and `from digitvae.runtime import x` may name modules.
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("digitvae."):
            found.add(node.value)
    return found


def _executed(tree: ast.AST) -> list[ast.AST]:
    """Return every node that can run: all but the bodies of `if TYPE_CHECKING:` blocks."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for folder in PACKAGES.values() for p in _files(folder)}
    return {name: {m for m in _imports(path) if m in files and m != name} for name, path in files.items()}


def test_the_runtime_imports_no_other_layer_nor_click_torch_onnx() -> None:
    for path in _files("runtime"):
        for module in _imports(path):
            top = module.split(".")[0]
            assert top not in ("click", "torch", "onnx", "onnxscript", "sklearn"), f"{path.name} imports {module}"
            assert not module.startswith(("digitvae.cli", "digitvae.train", "digitvae.export", "digitvae.serve")), (
                f"{path.name} imports {module}"
            )


@pytest.mark.parametrize(
    "layer, forbidden",
    [
        ("train", ("digitvae.cli", "digitvae.export")),
        ("export", ("digitvae.cli",)),
        ("serve", ("digitvae.cli", "digitvae.train", "digitvae.export", "torch", "click")),
        ("bench", ("digitvae.cli", "digitvae.export", "digitvae.serve", "click")),
    ],
)
def test_train_and_export_do_not_import_the_cli(layer: str, forbidden: tuple[str, ...]) -> None:
    for path in _files(layer):
        if path.name == "__main__.py":
            continue  # a command-line entry point (below), not a library module
        for module in _imports(path):
            assert not module.startswith(forbidden), f"{layer}/{path.name} imports {module}"


def test_the_train_entry_point_only_starts_the_train_command_and_nothing_imports_it() -> None:
    # `python -m digitvae.train` must be a module of digitvae.train, yet it is the CLI's train
    # command: the one file of train/ that may import the CLI, and a leaf that nothing imports.
    entry = ROOT / "train" / "__main__.py"
    assert {m for m in _imports(entry) if m.startswith("digitvae.")} == {
        "digitvae.cli.train",
        "digitvae.cli.train.main",
    }
    assert not [name for name, imported in _graph().items() if "digitvae.train.__main__" in imported]


def test_bench_imports_torch_and_training_code_only_inside_the_torch_comparison() -> None:
    def heavy(module: str) -> bool:
        return module.split(".")[0] in ("torch", "onnx") or module.startswith("digitvae.train")

    for path in _files("bench"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if path.name == "torch_twin.py":  # the torch comparison: torch inside its functions only
            top = ast.Module(body=[n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef))])
            assert not [m for m in _imports_in(top, _package(path)) if heavy(m)]
            assert [m for m in _imports(path) if heavy(m)], "the torch comparison imports torch"
        else:
            assert not [m for m in _imports(path) if heavy(m)], f"bench/{path.name} imports torch or training code"


def _is_command(node: ast.FunctionDef) -> bool:
    """Whether a function is a click command or group (`@click.command()`, `@data.command()`, `@click.group()`...)."""
    return any(
        isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr in ("command", "group")
        for d in node.decorator_list
    )


def test_cli_modules_hold_commands_and_short_helpers() -> None:
    for path in _files("cli"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        commands = {n.name for n in functions if _is_command(n)}
        if path.stem not in CLI_SHARED:
            assert commands, f"cli/{path.name} defines no click command"
        in_commands = {id(inner) for n in functions if n.name in commands for inner in ast.walk(n) if inner is not n}
        long = {
            n.name: n.end_lineno - n.lineno + 1
            for n in functions
            if not _is_command(n) and id(n) not in in_commands and n.end_lineno - n.lineno + 1 > CLI_HELPER_LINES
        }
        assert long == {}, f"cli/{path.name}: helpers over {CLI_HELPER_LINES} lines"


def test_no_module_imports_its_importer() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_graph_sees_function_level_and_string_imports() -> None:
    graph = _graph()
    assert "digitvae.cli.likelihood" in graph["digitvae.cli.main"]  # named for importlib.import_module
    assert "digitvae.export.onnx" in graph["digitvae.cli.export"]  # inside a command function


def test_readme_stays_short_and_links_only_documents_that_exist() -> None:
    """README is the front page: what it is, the commands, pictures, the API in brief, links; detail lives in docs/."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200, "README.md is over 200 lines: move detail to docs/"
    for target in re.findall(r"\]\(([^)#:]+)\)", readme):
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_runtime_modules_stay_short() -> None:
    """One concern per module: none of the runtime's is over 350 lines."""
    long = {str(p.relative_to(ROOT)): n for p in _files("runtime") if (n := len(p.read_text().splitlines())) > 350}
    assert long == {}


def test_each_runtime_subpackage_says_what_it_holds_and_is_packaged() -> None:
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    folders = [p for p in (ROOT / "runtime").iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert {p.name for p in folders} == {"inference", "folders", "digits", "outliers"}
    for folder in folders:
        init = folder / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.splitlines()) == 1, f"{init.relative_to(ROOT)} needs a one-line docstring"
        assert f"digitvae.runtime.{folder.name}" in packages


def test_no_test_module_imports_conftest() -> None:
    """pytest loads conftest.py itself: what tests share lives in importable modules beside it."""
    importers = []
    for path in _files("tests"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(name.split(".")[0] == "conftest" for name in names):
                importers.append(str(path.relative_to(ROOT)))
    assert importers == []


def test_conftest_holds_fixtures_and_hooks_only() -> None:
    tree = ast.parse((ROOT / "tests" / "conftest.py").read_text(encoding="utf-8"))
    others = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) or (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)  # the docstring
        ):
            continue
        if isinstance(node, ast.FunctionDef) and (
            node.name.startswith("pytest_") or any("fixture" in ast.unparse(d) for d in node.decorator_list)
        ):
            continue
        others.append(ast.unparse(node).splitlines()[0])
    assert others == []


def test_every_test_module_says_what_it_holds_in_its_first_line() -> None:
    unsaid = []
    for path in _files("tests"):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        lines = doc.splitlines() if doc else [""]
        if not lines[0].endswith(".") or (len(lines) > 1 and lines[1] != ""):
            unsaid.append(str(path.relative_to(ROOT)))
    assert unsaid == []
