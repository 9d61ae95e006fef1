"""The layer rules, checked by parsing every import (top-level and inside functions) with ``ast``:
``model/`` is the network only (it may import ``model`` and ``djepa_t2i.config``, never the data
layer, the warehouse, the training system or the flows), and ``training/`` reaches the warehouse
only through ``training/lake_io.py``."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("model", "tasks", "warehouse", "training", "flows", "djepa_t2i", "experiments", "bench")


def imported_modules(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, at any depth of the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def first_party(names: set[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] in FIRST_PARTY}


@pytest.mark.parametrize("path", sorted((ROOT / "model").glob("*.py")), ids=lambda p: p.name)
def test_model_is_the_network_only(path):
    allowed = ("model", "djepa_t2i.config")
    bad = {n for n in first_party(imported_modules(path))
           if not any(n == a or n.startswith(a + ".") for a in allowed)}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: model/ is the network only"


@pytest.mark.parametrize("path", sorted((ROOT / "training").glob("*.py")), ids=lambda p: p.name)
def test_training_reaches_the_warehouse_only_through_lake_io(path):
    wh = {n for n in imported_modules(path) if n.split(".")[0] == "warehouse"}
    if path.name == "lake_io.py":
        assert wh, "lake_io is the training system's door to the warehouse"
    else:
        assert not wh, f"training/{path.name} imports {sorted(wh)}: go through training.lake_io"


def test_the_checker_sees_nested_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\ndef f():\n    from warehouse import lake as lk\n    import tasks.shards\n")
    assert first_party(imported_modules(f)) == {"warehouse", "warehouse.lake", "tasks.shards"}
