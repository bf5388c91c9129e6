"""The arrows run one way: each part of the package imports only the parts below it (an AST walk of every import)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness import REPO

PACKAGE = REPO / "cifar_lightning"
# bottom to top; a module may import its own layer and those below (docs/architecture.md)
LAYERS = [
    {"errors", "files"},
    {"models"},
    {"explain"},
    {"data"},
    {"runs"},
    {"training"},
    {"callbacks"},
    {"lightning_cli"},
    {"inference"},
    {"tools", "demo"},
    {"cli", "recipes", "__main__", "__init__"},
]
# what a part must not know, though the layers would allow it: networks are plain torch, and
# neither networks nor data know each other
FORBIDDEN = {
    "models": ("lightning", "pytorch_lightning", "torchmetrics", "albumentations", "cifar_lightning.data"),
    "data": ("cifar_lightning.models",),
    "explain": ("lightning", "cifar_lightning.models"),  # maps of any torch network
}


def forbidden(part: str, imported: str) -> bool:
    return any(imported == p or imported.startswith(p + ".") for p in FORBIDDEN.get(part, ()))


def part_of(module: str) -> str:
    """``cifar_lightning.data.sources`` -> ``data``; ``cifar_lightning`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(part: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if part in layer)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "cifar_lightning":  # from cifar_lightning import x: a module when x is one
                found += [
                    (
                        node.lineno,
                        f"cifar_lightning.{a.name}"
                        if (PACKAGE / a.name).exists() or (PACKAGE / f"{a.name}.py").exists()
                        else "cifar_lightning",
                    )
                    for a in node.names
                ]
            else:
                found.append((node.lineno, node.module))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def test_every_module_has_a_layer():
    assert {part_of(module_name(p)) for p in MODULES} <= set().union(*LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    part = part_of(module_name(path))
    wrong = []
    for line, imported in imports_of(path):
        if forbidden(part, imported):
            wrong.append(f"line {line}: {imported} (the {part} part must not know it)")
        if imported.startswith("cifar_lightning") and layer_of(part_of(imported)) > layer_of(part):
            wrong.append(f"line {line}: {imported} is above {part}")
    assert wrong == []


def test_the_walk_catches_an_upward_import(tmp_path):
    # the checker itself: a network that imports the training module is caught
    bad = tmp_path / "net.py"
    bad.write_text("import torch\n\ndef build():\n    from cifar_lightning.training.module import ImageClassifier\n")
    assert [m for _, m in imports_of(bad)] == ["torch", "cifar_lightning.training.module"]
    assert layer_of(part_of("cifar_lightning.training.module")) > layer_of("models")
    assert forbidden("models", "lightning.pytorch") and forbidden("data", "cifar_lightning.models.seed")
    assert not forbidden("models", "torch.nn")


def import_cycles(modules: dict[str, list[str]]) -> list[list[str]]:
    """Every cycle of imports among ``modules`` (name -> the package modules it imports), as a path."""
    cycles, done = [], set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycles.append(path[path.index(name) :] + [name])
            return
        if name in done:
            return
        for imported in modules.get(name, []):
            visit(imported, [*path, name])
        done.add(name)

    for name in modules:
        visit(name, [])
    return cycles


def test_no_two_modules_import_each_other():
    # within a layer the arrows may point either way, but never round: trust checks data for the
    # training module without knowing it (the module class is an argument)
    graph = {module_name(p): [m for _, m in imports_of(p) if m in {module_name(q) for q in MODULES}] for p in MODULES}
    assert import_cycles(graph) == []
    assert import_cycles({"a": ["b"], "b": ["a"], "c": []}) == [["a", "b", "a"]]  # the walk itself
