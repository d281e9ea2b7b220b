"""Griffe extension: render keras_vae's docstrings and signatures as meant.

1. Shared `Args:` entries. keras_vae's docstrings document parameters
that share a description on one line, as Keras does:

    Args:
        reduction, name, dtype: as for `keras.losses.Loss`.

Google-style parsing would make that one parameter named
"reduction, name, dtype", which matches no parameter of the signature, so
the rendered table would show it as required, with no default. This
extension rewrites such an entry into one entry per name with the same
description, so each gets its default from the signature.

2. `params_size` of the losses whose count depends on their arguments is
decorated with `keras_vae.losses._utils.class_or_instance_method` (a
classmethod that binds to the instance when called on one). Griffe does
not know the decorator and would show its first parameter, `owner`, in
the signature; this extension drops it and labels the method
"classmethod", as Python sees it when called on the class.

The code is unchanged; this only affects the rendered site.
"""

import re

import griffe

_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_SHARED = re.compile(r"^(\s+)(\w+(?:\s*,\s*\w+)+):(.*)$")


def _depth(line):
    return len(line) - len(line.lstrip())


def split_shared_args(text):
    """`text` with each `a, b: description` entry of an Args section split."""
    lines = text.split("\n")
    out = []
    entry_depth = None  # indent of the entries of the Args section we are in
    in_args = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if _SECTION.match(line):
            in_args, entry_depth = True, None
        elif in_args and line.strip():
            if entry_depth is None:
                entry_depth = _depth(line)
            elif _depth(line) < entry_depth:
                in_args = False  # the next section
        shared = _SHARED.match(line)
        if in_args and shared and _depth(line) == entry_depth:
            end = i + 1  # the entry's continuation lines are deeper
            while end < len(lines) and (
                not lines[end].strip() or _depth(lines[end]) > entry_depth
            ):
                end += 1
            while end > i + 1 and not lines[end - 1].strip():
                end -= 1  # leave the blank lines after the entry
            for name in re.split(r"\s*,\s*", shared.group(2)):
                out.append(f"{shared.group(1)}{name}:{shared.group(3)}")
                out.extend(lines[i + 1:end])
            i = end
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def _is_class_or_instance_method(function):
    return any(str(d.value).endswith("class_or_instance_method")
               for d in function.decorators)


class KerasVAEDocs(griffe.Extension):
    """Splits shared Args entries; fixes class_or_instance_method signatures."""

    def on_object(self, *, obj, **kwargs):
        if obj.is_alias:
            return
        if obj.docstring is not None:
            value = split_shared_args(obj.docstring.value)
            if value != obj.docstring.value:
                obj.docstring.value = value
        if obj.is_function and _is_class_or_instance_method(obj):
            params = list(obj.parameters)
            if params and params[0].name == "owner":
                del obj.parameters["owner"]
                obj.labels.add("classmethod")
