"""The documentation site (mkdocs.yml, docs/) cannot drift from the code.

- `test_mkdocs_build_strict`: `mkdocs build --strict` passes (no warning:
  every `::: name` resolves, every docstring parses, every link and anchor
  exists, every `include-code` marker finds its function).
- `test_runnable_blocks`: every ```python block of docs/**/*.md marked
  runnable is executed. The convention: a block is runnable when the line
  right before its opening fence is `<!-- test -->`. A page's runnable
  blocks run in order in one namespace (a guide builds on its earlier
  blocks, as a reader copying them would), in a fresh temporary working
  directory. Blocks not marked are illustrations (they may name data the
  page does not define) and are not run. To keep this fast, `compile`
  defaults to `jit_compile=False` here unless a block passes it (XLA
  compilation costs seconds per model on 2 cores, and XLA gives the same
  numbers as the graph step: the rest of the suite checks XLA); set
  KERAS_VAE_DOCS_XLA=1 to run the blocks exactly as written.
- `test_every_public_name_has_an_api_entry`: each public name (the
  `__all__` of keras_vae, losses, priors, objectives, callbacks and
  plotting, the functions of keras_vae.evaluate, Trace/LevelTrace/run_trace,
  random.derive_seed, export.export_serving) has a `::: name` entry in
  docs/api/*.md, and each entry names a real object.
- The home page's user story is the README's, the examples gallery lists
  every examples/*.py, and the build hooks in docs/_hooks do their job.
"""

import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = DOCS / "api"

MARKER = "<!-- test -->"
_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$",
                    re.MULTILINE | re.DOTALL)


def doc_pages():
    return sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts)


def runnable_blocks(text):
    """[(line number, source)] of the blocks marked runnable, in order.

    Raises if a marker is not followed by a ```python fence on the next
    line (a typo would otherwise silently skip a block).
    """
    blocks = []
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        if line != line.lstrip():
            raise ValueError(f"line {i + 1}: runnable blocks must not be "
                             "indented (inside admonitions or tabs)")
        rest = "".join(lines[i + 1:])
        match = _FENCE.match(rest)
        if match is None:
            raise ValueError(f"line {i + 1}: '{MARKER}' is not followed by "
                             "a ```python block on the next line")
        blocks.append((i + 2, match.group(1)))
    return blocks


# Pages whose blocks show behaviour the package promises but does not have
# yet: {page: (regex the failure must match, reason)}. The test xfails on
# exactly that failure and fails once it is fixed, to remove the entry.
KNOWN_FAILURES = {}


def _pages_with_blocks():
    return [p for p in doc_pages() if MARKER in p.read_text(encoding="utf-8")]


def test_runnable_convention_finds_blocks():
    # The harness itself: a marked block is found, an unmarked one is not,
    # a dangling marker is an error.
    text = ("x\n<!-- test -->\n```python\na = 1\n```\n\n"
            "```python\nnot_run()\n```\n")
    assert runnable_blocks(text) == [(3, "a = 1\n")]
    with pytest.raises(ValueError, match="not followed"):
        runnable_blocks("<!-- test -->\n\n```python\na = 1\n```\n")
    # Every page with a marker parses.
    for page in _pages_with_blocks():
        assert runnable_blocks(page.read_text(encoding="utf-8")), page


@pytest.mark.parametrize(
    "page", _pages_with_blocks(),
    ids=lambda p: str(p.relative_to(DOCS)),
)
def test_runnable_blocks(page, tmp_path, monkeypatch):
    import keras_vae

    blocks = runnable_blocks(page.read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)
    if os.environ.get("KERAS_VAE_DOCS_XLA") != "1":
        compile_with_xla = keras_vae.VAEModel.compile

        def compile_without_xla(self, *args, **kwargs):
            kwargs.setdefault("jit_compile", False)
            return compile_with_xla(self, *args, **kwargs)

        monkeypatch.setattr(keras_vae.VAEModel, "compile",
                            compile_without_xla)
    namespace = {"__name__": "__docs__"}
    rel = page.relative_to(ROOT)
    known = KNOWN_FAILURES.get(page.relative_to(DOCS).as_posix())
    try:
        for line, source in blocks:
            code = compile(source, f"{rel}:{line}", "exec")
            try:
                exec(code, namespace)  # noqa: S102 - the docs' own code
            except Exception as error:
                message = f"{type(error).__name__}: {error}"
                if known and re.search(known[0], message):
                    pytest.xfail(f"{rel}:{line}: known failure: {known[1]}")
                raise AssertionError(
                    f"{rel}: the runnable block at line {line} failed: "
                    f"{message}"
                ) from error
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert not known, (
        f"{rel} runs now: remove it from KNOWN_FAILURES in {__file__}")


# --------------------------------------------------------- API coverage
def public_names():
    """`{public name: object}` of every name the API reference must show."""
    import keras_vae
    from keras_vae import (
        callbacks,
        evaluate,
        losses,
        objectives,
        plotting,
        priors,
    )

    names = {f"keras_vae.{n}": getattr(keras_vae, n) for n in keras_vae.__all__}
    for module in (losses, priors, objectives, callbacks, plotting):
        names.update({f"{module.__name__}.{n}": getattr(module, n)
                      for n in module.__all__})
    names.update({
        f"keras_vae.evaluate.{n}": f
        for n, f in inspect.getmembers(evaluate, inspect.isfunction)
        if f.__module__ == evaluate.__name__ and not n.startswith("_")
    })
    for module, attrs in (("keras_vae.models.trace",
                           ("Trace", "LevelTrace", "run_trace")),
                          ("keras_vae.random", ("derive_seed",)),
                          ("keras_vae.export", ("export_serving",))):
        mod = importlib.import_module(module)
        names.update({f"{module}.{a}": getattr(mod, a) for a in attrs})
    return names


def api_entries():
    """`{identifier: page}` of the `::: identifier` lines in docs/api."""
    entries = {}
    for page in sorted(API.glob("*.md")):
        for match in re.finditer(r"^::: ([\w.]+)\s*$",
                                 page.read_text(encoding="utf-8"),
                                 re.MULTILINE):
            entries[match.group(1)] = page.name
    return entries


def resolve(identifier):
    """The object `::: identifier` renders: as mkdocstrings (griffe) reads
    a path, the longest importable module prefix, then attributes. So
    `keras_vae.objectives.elbo` is the submodule elbo.py, not the function
    the package re-exports under that name (`...objectives.elbo.elbo`)."""
    parts = identifier.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(identifier)


def test_every_public_name_has_an_api_entry():
    rendered = {}
    for identifier, page in api_entries().items():
        try:
            rendered[identifier] = resolve(identifier)
        except (ImportError, AttributeError) as error:
            pytest.fail(f"docs/api/{page}: `::: {identifier}` names no "
                        f"object ({error})")
    # By object, not by name: `keras_vae.objectives.elbo` (the function)
    # is rendered as `::: keras_vae.objectives.elbo.elbo`.
    objects = {id(obj) for obj in rendered.values()}
    missing = sorted(
        name for name, obj in public_names().items() if id(obj) not in objects
    )
    assert not missing, (
        "Public names without an entry in the API reference (add a "
        f"`::: name` line to the docs/api page of their module): {missing}"
    )


# ----------------------------------------------------- pages vs sources
def _python_block_after(text, heading):
    start = text.index(heading)
    return _FENCE.search(text, start).group(1)


def test_home_page_story_is_the_readme_story():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    home = (DOCS / "index.md").read_text(encoding="utf-8")
    story = _python_block_after(readme, "## The user's story")
    assert _python_block_after(home, "## The user's story") == story, (
        "docs/index.md's user story differs from README.md's: copy the "
        "README's block into docs/index.md"
    )


def test_examples_gallery_lists_every_example():
    gallery = (DOCS / "examples.md").read_text(encoding="utf-8")
    for script in sorted((ROOT / "examples").glob("*.py")):
        if script.name.startswith("_"):  # helpers the examples share
            continue
        rel = f"examples/{script.name}"
        assert f"<!-- include-docstring: {rel} -->" in gallery, (
            f"docs/examples.md has no section for {rel}"
        )


# ------------------------------------------------------ build tooling
def _hook(name):
    spec = importlib.util.spec_from_file_location(
        name, DOCS / "_hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_include_code_hook_finds_definitions():
    import ast

    hook = _hook("include_code")
    source = (ROOT / "examples" / "mnist_vae.py").read_text(encoding="utf-8")
    text = hook.definition_source(source, ast.parse(source), "build_vae")
    assert text.startswith("def build_vae(") and "VAEModel" in text
    assert hook.definition_source(source, ast.parse(source), "nope") is None


def test_shared_args_are_split_for_the_api_reference():
    if importlib.util.find_spec("griffe") is None:
        pytest.skip("griffe (mkdocstrings-python) is not installed")
    hook = _hook("griffe_keras_vae")
    doc = ("Loss.\n\nArgs:\n    scale: a float,\n        more.\n"
           "    reduction, name, dtype: as for Loss\n        and more.\n\n"
           "Example:\n\n    a, b: not an argument\n")
    assert hook.split_shared_args(doc) == (
        "Loss.\n\nArgs:\n    scale: a float,\n        more.\n"
        "    reduction: as for Loss\n        and more.\n"
        "    name: as for Loss\n        and more.\n"
        "    dtype: as for Loss\n        and more.\n\n"
        "Example:\n\n    a, b: not an argument\n")


# ---------------------------------------------------------------- build
@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings",
                   "mkdocstrings_handlers"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: pip install -e "
                        "\".[docs]\" to build the documentation")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    # The API reference rendered members, not just headings.
    page = (tmp_path / "site" / "api" / "vae_model" / "index.html").read_text(
        encoding="utf-8")
    for member in ("log_likelihood", "export_serving", "compute_objective"):
        assert f'id="keras_vae.VAEModel.{member}"' in page, member
