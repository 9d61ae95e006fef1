"""Every config fact has one home (issue #24 item 1): the typed config in djepa_t2i/config/.

The test walks every field of ``Config`` (pydantic ``model_fields``, recursively) and reads the
package with ``ast``: a keyword default of a function, a dataclass/class attribute, a module-level
constant or an ``add_argument("--name", default=...)`` flag whose name is a config field's name
and whose literal value is that field's default restates the fact in a second home, where it
silently stops following the config (the 77-token bug, issue #23 item 1). Such a value must be
read from the config section instead; the few that are not config facts are listed in ``ALLOWED``
with the reason.
"""
from __future__ import annotations

import ast
from pathlib import Path

from pydantic import BaseModel

from djepa_t2i.config import Config

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("djepa_t2i", "model", "training", "tasks", "warehouse", "flows", "experiments")
SKIP = {f"djepa_t2i/config/{f}.py" for f in ("__init__", "base", "data", "train")}  # the home itself

# (name, value): why a same-named literal elsewhere is not a second home of the config's fact
ALLOWED: dict[tuple[str, object], str] = {
    ("device", "auto"): "the resolve_device sentinel ('cuda when visible, else cpu'), not a setting",
    ("device", "cpu"): "where a function puts tensors when its caller names no device (a checkpoint, "
                       "tokenizer or CLIP weights loaded on the host), not curate.device's setting",
    ("dtype", "auto"): "the 'pick by device and backend' sentinel every loader resolves, not a setting",
    ("seed", 0): "the identity seed of a pure function's own RNG, not the configured run seed",
    ("force", False): "'do not redo finished work' is every step's safe default, not a tuned value",
}
# (file, name): a same-named value that means something else there
ALLOWED_SITES: dict[tuple[str, str], str] = {
    ("tasks/evaluators/shapes_geneval.py", "BENCHMARK"):
        "the benchmark's own name, defined by its module; the config's default names that benchmark "
        "(the config cannot import tasks/)",
    ("experiments/vope_design.py", "MARGIN"):
        "the VoPE report's 'within 0.05 of 1x' verdict margin, not feedback.margin",
    ("tasks/filters/clip_embed.py", "batch_size"):
        "tasks/filters is being rebuilt as declared stages (#24 item 2); every caller passes "
        "curate.<stage>.batch_size, the default goes with that rework",
}


def config_defaults() -> dict[str, list[tuple[str, object]]]:
    """``{field name: [(dotted key, literal default), ...]}`` over every section of ``Config``."""
    out: dict[str, list[tuple[str, object]]] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
                continue
            d = info.default
            if isinstance(d, (int, float, str, bool, tuple)) and not isinstance(d, BaseModel):
                out.setdefault(name, []).append((prefix + name, d))
    walk(Config, "")
    return out


def same(a: object, b: object) -> bool:
    """Equal literal values of the same kind (``True`` is not ``1``; ``1`` is ``1.0``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def literal(node: ast.AST | None) -> tuple[bool, object]:
    try:
        return True, ast.literal_eval(node) if node is not None else None
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def named_literals(tree: ast.Module) -> list[tuple[str, ast.AST, int]]:
    """(name, value node, line) of every keyword default, class/module constant and argparse
    flag default in ``tree``."""
    out: list[tuple[str, ast.AST, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            pos = a.posonlyargs + a.args
            out += [(p.arg, d, d.lineno) for p, d in zip(pos[len(pos) - len(a.defaults):], a.defaults)]
            out += [(p.arg, d, d.lineno) for p, d in zip(a.kwonlyargs, a.kw_defaults) if d is not None]
        elif isinstance(node, (ast.Module, ast.ClassDef)):
            for st in node.body:
                if isinstance(st, ast.Assign):
                    out += [(t.id, st.value, st.lineno) for t in st.targets if isinstance(t, ast.Name)]
                elif isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.value is not None:
                    out.append((st.target.id, st.value, st.lineno))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            dest = next((f.lstrip("-").replace("-", "_") for f in flags if f.startswith("--")), None)
            default = next((k.value for k in node.keywords if k.arg == "default"), None)
            if dest and default is not None:
                out.append((dest, default, node.lineno))
    return out


def second_homes() -> list[str]:
    fields = config_defaults()
    found = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            if rel in SKIP:
                continue
            for name, node, line in named_literals(ast.parse(path.read_text(), rel)):
                key = name.lower()
                ok, value = literal(node)
                if not ok or key not in fields:
                    continue
                if any(k == key and same(value, v) for k, v in ALLOWED) or (rel, name) in ALLOWED_SITES:
                    continue
                for dotted, d in fields[key]:
                    if same(value, d):
                        found.append(f"{rel}:{line}: {name} = {value!r} restates config {dotted} = {d!r}")
    return found


def test_the_walk_sees_every_section():
    f = config_defaults()
    assert ("model.text_max_length", 256) in f["text_max_length"]
    assert ("evaluate.cfg", 6.0) in f["cfg"] and ("feedback.step_size", 0.5) in f["step_size"]
    assert ("notions.temper", 0.5) in f["temper"] and ("train.betas", (0.9, 0.95)) in f["betas"]


def test_the_scanner_finds_a_restated_default():
    tree = ast.parse("MAX = 1\ndef f(x, text_max_length=256, cfg=4.0): pass\n"
                     "class R:\n    step_size: float = 0.5\n"
                     "p.add_argument('--flow-steps', type=int, default=250)\n")
    got = {(n, literal(v)[1]) for n, v, _ in named_literals(tree)}
    assert {("text_max_length", 256), ("cfg", 4.0), ("step_size", 0.5), ("flow_steps", 250), ("MAX", 1)} <= got
    assert not same(True, 1) and same(1, 1.0) and same((0.9, 0.95), [0.9, 0.95])


def test_no_config_default_has_a_second_home():
    found = second_homes()
    assert not found, "config facts restated outside djepa_t2i/config/ (read the section instead):\n" + \
        "\n".join(found)
