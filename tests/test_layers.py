"""The package's layers: a module imports only from its own layer's package or from layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "etcd_stack"

# model <- member <- cloud / sandbox <- preview / ops <- cli (DESIGN.md, Layout). Siblings never import each other.
RANKS = {"model": 0, "member": 1, "cloud": 2, "sandbox": 2, "preview": 3, "ops": 3, "cli": 4}
SUBPACKAGES = {"member", "cloud", "sandbox", "preview", "ops"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "etcd_stack" or len(parts) == 1:
        return "model"
    if parts[1] in SUBPACKAGES:
        return parts[1]
    return "cli" if parts[1] == "cli" else "model"


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path) -> list[tuple[int, str]]:
    """The etcd_stack modules a file imports, with their line numbers (`from etcd_stack import x` names x)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("etcd_stack")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("etcd_stack"):
            if node.module in ("etcd_stack", *(f"etcd_stack.{sub}" for sub in SUBPACKAGES)):
                found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def violations(path: Path) -> list[str]:
    own = layer_of(module_name(path))
    wrong = []
    for line, target in imported(path):
        theirs = layer_of(target)
        if theirs != own and RANKS[theirs] >= RANKS[own]:
            wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({own}) imports {target} ({theirs})")
    return wrong


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_modules_import_only_from_lower_layers(path):
    assert violations(path) == []


def test_the_layer_check_catches_an_upward_import(tmp_path, monkeypatch):
    fake = tmp_path / "etcd_stack"
    (fake / "member").mkdir(parents=True)
    (fake / "member" / "leaky.py").write_text("from etcd_stack.cloud import members\nfrom etcd_stack import config\n")
    (fake / "sandbox").mkdir()
    (fake / "sandbox" / "sideways.py").write_text("from etcd_stack.cloud.pki import ClusterPki\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", fake)
    assert violations(fake / "member" / "leaky.py") == [
        "etcd_stack/member/leaky.py:1 (member) imports etcd_stack.cloud.members (cloud)"]
    assert violations(fake / "sandbox" / "sideways.py") == [
        "etcd_stack/sandbox/sideways.py:1 (sandbox) imports etcd_stack.cloud.pki (cloud)"]


def test_every_subpackage_is_a_layer():
    present = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    assert present == SUBPACKAGES
