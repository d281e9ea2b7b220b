"""MkDocs hook: include real code from the repository into the docs.

Guides must not drift from the code, so rather than copying an example's
model into a page, a page names it and the build inserts its current
source:

    <!-- include-code: examples/mnist_vae.py::build_vae -->
        the top-level function or class `build_vae` (decorators included)
        of that file, as a ```python block
    <!-- include-docstring: examples/mnist_vae.py -->
        the module docstring of that file, as a ```text block

A marker may be indented (inside an admonition); the inserted block is
indented the same.

Paths are relative to the directory of mkdocs.yml. A missing file or name
is logged as a warning, so `mkdocs build --strict` fails on it.
"""

import ast
import logging
import re
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.include_code")

_CODE = re.compile(r"^([ \t]*)<!-- include-code: (\S+?)::(\w+) -->$",
                   re.MULTILINE)
_DOC = re.compile(r"^([ \t]*)<!-- include-docstring: (\S+?) -->$",
                  re.MULTILINE)


def _indent(text, prefix):
    return "\n".join(prefix + line if line else line
                     for line in text.splitlines())


def _read(root, rel, page):
    path = (root / rel).resolve()
    if not path.is_file():
        log.warning("%s: include of '%s': no such file", page, rel)
        return None, None
    source = path.read_text(encoding="utf-8")
    return source, ast.parse(source)


def definition_source(source, tree, name):
    """Source of the top-level def/class (or assignment) `name`, or None."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                             ast.ClassDef)) and node.name == name:
            start = min([d.lineno for d in node.decorator_list]
                        + [node.lineno])
            lines = source.splitlines()[start - 1:node.end_lineno]
            return "\n".join(lines)
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.get_source_segment(source, node)
    return None


def on_page_markdown(markdown, page, config, files):
    root = Path(config["config_file_path"]).parent
    where = page.file.src_path

    def code(match):
        indent, rel, name = match.groups()
        source, tree = _read(root, rel, where)
        if source is None:
            return match.group(0)
        text = definition_source(source, tree, name)
        if text is None:
            log.warning("%s: include of '%s::%s': no top-level '%s' in it",
                        where, rel, name, name)
            return match.group(0)
        return _indent(f'```python title="{rel}"\n{text}\n```', indent)

    def doc(match):
        indent, rel = match.groups()
        source, tree = _read(root, rel, where)
        if source is None:
            return match.group(0)
        text = ast.get_docstring(tree)
        if not text:
            log.warning("%s: include of '%s': it has no docstring", where, rel)
            return match.group(0)
        return _indent(f"```text\n{text}\n```", indent)

    return _DOC.sub(doc, _CODE.sub(code, markdown))
