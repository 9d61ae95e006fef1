"""The rules of docs/architecture.md, checked by parsing every import (top-level and inside
functions) with ``ast``: no module imports a layer above its own or beside it, no import cycle,
``model/`` is the network only, ``training/`` reaches the warehouse only through ``lake_io``,
only ``tasks/shard_format.py`` reads a tar, the checkpoint protocol lives in
``training/checkpoints.py`` alone, only the orchestrating flows (demo, rehearse) call other
flows, and first-party imports sit at the top of the module (a lazy import only for a library,
with its reason on the line). The layer table
of docs/architecture.md is generated from ``LAYERS`` (``python tests/test_layers.py``) and the
test fails when the two differ."""
from __future__ import annotations

import ast
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
FIRST_PARTY = ("model", "tasks", "warehouse", "training", "flows", "report", "djepa_t2i", "experiments", "bench")

# Bottom to top. A module may import its own unit and the units of the layers below; never a unit
# of its own layer (beside it) or of a layer above. (layer, unit, what it holds)
LAYERS: list[tuple[int, str, str]] = [
    (1, "djepa_t2i.config", "settings every layer reads (pydantic; --set overrides merged by OmegaConf), "
                            "path checks, resolve_device"),
    (1, "djepa_t2i.env", "the offline environment, imported first by every entry point"),
    (1, "djepa_t2i.cli_args", "the argparse pieces command modules share (ranges, --set)"),
    (1, "djepa_t2i.prefect_auth", "the local Prefect server's API secret"),
    (2, "warehouse", "the Parquet lake (append-only, atomically renamed partitions), DuckDB views, "
                     "the sampling-weights versions and their CURRENT pointer"),
    (2, "model", "the network only: no lake, no tars, no training loop"),
    (3, "tasks", "the data layer: plain functions over pairs, images and tars (curation, filters, "
                 "captioning, notions, shard writer, pure scorers)"),
    (4, "training", "the training system; the lake only through training.lake_io"),
    (4, "report", "`t2i report`: plots of the lake and the gallery of curated pairs"),
    (5, "flows", "Prefect @flow/@task wrappers over plain functions"),
    (5, "experiments", "the paper's claims in miniature (docs/experiments.md)"),
    (6, "bench", "benchmarks (docs/benchmarks.md)"),
    (6, "djepa_t2i.cli", "`t2i ...`: one command line over the flows and tools"),
    (6, "djepa_t2i.serve", "`t2i serve`: the local Prefect server, pool, deployments and worker"),
]


def unit_of(module: str) -> str | None:
    """The unit of LAYERS a first-party module belongs to (the longest matching name)."""
    units = [u for _, u, _ in LAYERS if module == u or module.startswith(u + ".")]
    return max(units, key=len) if units else None


LAYER = {u: layer for layer, u, _ in LAYERS}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> list[Path]:
    return sorted(p for d in FIRST_PARTY for p in (ROOT / d).rglob("*.py"))


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


MODULES = {module_name(p): p for p in sources()}


def resolve(name: str) -> str | None:
    """The module of this tree that ``name`` (a module, or a module's attribute) refers to."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


@lru_cache(maxsize=1)
def import_graph() -> dict[str, set[str]]:
    """module -> the first-party modules it imports (a package import counts as its __init__)."""
    return {m: {r for n in first_party(imported_modules(p)) if (r := resolve(n)) and r != m}
            for m, p in MODULES.items()}


def layer_table() -> str:
    rows = ["| layer | unit | holds |", "|---|---|---|"]
    rows += [f"| {layer} | `{unit}` | {what} |" for layer, unit, what in reversed(LAYERS)]
    return "\n".join(rows)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# --------------------------------------------------------------------------- the layer rule
def test_every_module_has_a_layer():
    assert not [m for m in MODULES if unit_of(m) is None and m != "djepa_t2i"]


@pytest.mark.parametrize("module", sorted(MODULES), ids=str)
def test_no_import_upward_or_sideways(module):
    me = unit_of(module)
    if me is None:  # the djepa_t2i package's own __init__
        return
    bad = []
    for target in sorted(import_graph()[module]):
        other = unit_of(target)
        if other is not None and other != me and LAYER[other] >= LAYER[me]:
            bad.append(f"{target} ({other}, layer {LAYER[other]})")
    assert not bad, f"{module} ({me}, layer {LAYER[me]}) imports {bad}: a layer imports only the layers below it"


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_architecture_doc_shows_the_layer_table():
    assert layer_table() in DOC.read_text(), (
        "docs/architecture.md's layer table differs from tests/test_layers.py's LAYERS; "
        "print the table with `python tests/test_layers.py` and paste it")


def lazy_imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, module, has a comment) of every import inside a function of ``path``."""
    lines = path.read_text().splitlines()
    out = []
    for fn in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for n in ast.walk(fn):
                if isinstance(n, (ast.Import, ast.ImportFrom)):
                    mod = n.names[0].name if isinstance(n, ast.Import) else "." * n.level + (n.module or "")
                    out.append((n.lineno, mod, "#" in lines[n.end_lineno - 1]))
    return sorted(set(out))


# bench/ scripts measure import time and memory themselves, so they import where they measure
TOP_IMPORTS = [p for p in sources() if p.relative_to(ROOT).parts[0] != "bench"]


@pytest.mark.parametrize("path", TOP_IMPORTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_first_party_imports_sit_at_the_top(path):
    """An import inside a function hides an arrow of the graph (and once hid three cycles)."""
    bad = [f"line {n}: {m}" for n, m, _ in lazy_imports(path) if m.split(".")[0] in FIRST_PARTY or m.startswith(".")]
    assert not bad, f"{path.relative_to(ROOT)} imports first-party code inside functions: {bad}"


@pytest.mark.parametrize("path", TOP_IMPORTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_lazy_import_says_why(path):
    """A library imported inside a function carries its reason on the line (``# heavy``)."""
    bad = [f"line {n}: {m}" for n, m, said in lazy_imports(path) if not said]
    assert not bad, f"{path.relative_to(ROOT)} imports inside functions without a reason: {bad}"


# --------------------------------------------------------------------------- the rules of each layer
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


def tar_reads(path: Path) -> list[int]:
    """Lines where ``path`` imports webdataset or opens a tar for reading (``tarfile.open`` without
    a literal write mode)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            out += [node.lineno for n in names if n.split(".")[0] == "webdataset"]
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("tarfile.open", "tarfile.TarFile"):
            mode = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "mode"), None)
            if not (isinstance(mode, ast.Constant) and str(mode.value).startswith(("w", "x", "a"))):
                out.append(node.lineno)
    return sorted(out)


def test_only_shard_format_reads_a_tar():
    package = [p for p in sources() if p.relative_to(ROOT).parts[0] not in ("bench", "experiments")]
    bad = {str(p.relative_to(ROOT)): lines for p in package if (lines := tar_reads(p))}
    assert set(bad) == {"tasks/shard_format.py"}, f"tars read outside tasks/shard_format.py: {bad}"


def code_strings(path: Path) -> set[str]:
    """The string constants of ``path``'s code (docstrings left out)."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return {n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs}


def test_the_checkpoint_protocol_is_training_checkpoints_alone():
    """The commit marker and the stage suffix are spelled in one module; everyone else asks it."""
    bad = [str(p.relative_to(ROOT)) for p in sources()
           if p != ROOT / "training" / "checkpoints.py" and {"COMPLETE", ".partial"} & code_strings(p)]
    assert not bad, f"{bad} spell the checkpoint protocol's marker; use training.checkpoints"


ORCHESTRATORS = ("demo.py", "demo_post.py", "rehearse.py")  # flows made of other flows


def test_only_the_orchestrating_flows_call_other_flows():
    for path in sorted((ROOT / "flows").glob("*.py")):
        others = {n for n in first_party(imported_modules(path))
                  if n.split(".")[0] == "flows" and not (n + ".").startswith("flows.step.")}
        if path.name not in ORCHESTRATORS:  # flows.step is the shared run() shape, not a flow
            assert not others, (f"flows/{path.name} imports {sorted(others)}: only {ORCHESTRATORS} "
                                "orchestrate flows")


# --------------------------------------------------------------------------- the checker itself
def test_the_checker_sees_nested_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\ndef f():\n    from warehouse import lake as lk\n    import tasks.shards\n")
    assert first_party(imported_modules(f)) == {"warehouse", "warehouse.lake", "tasks.shards"}


def test_the_checker_finds_cycles_and_units():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert unit_of("djepa_t2i.serve.stack") == "djepa_t2i.serve" and unit_of("warehouse.db") == "warehouse"
    assert resolve("warehouse.db.query") == "warehouse.db" and resolve("numpy") is None


def test_the_checker_sees_lazy_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\ndef f():\n    import torch  # heavy\n    from warehouse import db\n")
    assert lazy_imports(f) == [(3, "torch", True), (4, "warehouse", False)]


def test_the_checker_sees_tar_reads(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import tarfile\nwith tarfile.open(p) as t: pass\nwith tarfile.open(p, 'w') as t: pass\n"
                 "tarfile.open(p, mode='r:*')\n")
    assert tar_reads(f) == [2, 4]


if __name__ == "__main__":
    print(layer_table())
