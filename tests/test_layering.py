"""The package's layering: no import circles, no import that runs back up.

Floors, lowest first (DESIGN.md, "Architecture"): a module may import its
own floor's package or lower floors, never a higher one. Imports inside
functions count too (a lazy import is still a dependency).
"""

import ast
import pathlib

import keras_vae

ROOT = pathlib.Path(keras_vae.__file__).parent

FLOORS = [
    # ground floor: imported by all, importing none of the rest
    {"_validation", "random", "posteriors", "kl", "seed_state", "_images"},
    {"priors", "losses"},
    {"layers"},
    {"objectives"},
    {"models"},
    {"export", "evaluate", "evaluate_images", "disentanglement", "callbacks",
     "plotting", "datasets"},
]


def _floor(top):
    for i, names in enumerate(FLOORS):
        if top in names:
            return i
    raise AssertionError(f"keras_vae.{top} has no floor in FLOORS")


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts == ("__init__",):
            continue  # the package root re-exports everything
        name = ".".join(p for p in parts if p != "__init__")
        yield name, path


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module == "keras_vae"
                or node.module.startswith("keras_vae.")):
            if node.module == "keras_vae":
                yield from (a.name for a in node.names)
            else:
                yield node.module[len("keras_vae."):]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("keras_vae."):
                    yield alias.name[len("keras_vae."):]


def _graph():
    graph = {}
    for name, path in _modules():
        graph[name] = {t for t in _imports(path) if t and t != name}
    return graph


def test_no_import_runs_back_up():
    upward = []
    for name, targets in _graph().items():
        here = _floor(name.split(".")[0])
        for target in targets:
            if _floor(target.split(".")[0]) > here:
                upward.append(f"keras_vae.{name} -> keras_vae.{target}")
    assert not upward, upward


def test_no_import_circle_between_modules():
    graph = _graph()
    modules = set(graph)

    def resolve(target):
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target

    edges = {m: {resolve(t) for t in ts} - {"", m} for m, ts in graph.items()}
    # A package's __init__ importing its own children is a re-export.
    edges = {m: {t for t in ts if not t.startswith(m + ".")}
             for m, ts in edges.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path):
    """The two checks can fail: a planted upward import is found."""
    planted = tmp_path / "planted.py"
    planted.write_text("from keras_vae.models import vae_model\n")
    assert "models" in set(_imports(planted))
    assert _floor("models") > _floor("layers")
