#!/usr/bin/env python3
"""Turns the usage examples atop headers into one C++ file that compiles them.

An example is the code between `// clang-format off` and `// clang-format on`
lines in a header's leading comment (the markers also keep clang-format from
reflowing it). For each header, in order: the header's own `#include`, the
example's `#include` lines, then the rest (functions, types) in a namespace
of its own nested in the header's, so the example's unqualified names resolve
as they would for a user of that namespace and two examples never collide.
One file per package: the LibTorch headers are parsed once, not once per
example (most of a compile's time).

Usage: header_example.py HEADER_PATH INCLUDE_PATH [HEADER_PATH INCLUDE_PATH
...] > examples.cc
"""

import re
import sys


def extract(text, path):
    lines = text.splitlines()
    code, inside, found = [], False, False
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped.startswith("//"):
            if inside:
                sys.exit(f"{path}:{number}: the example ends without "
                         "`// clang-format on`")
            if found:
                break  # Only the leading comment's examples.
            continue
        if stripped == "// clang-format off":
            inside, found = True, True
            continue
        if stripped == "// clang-format on":
            inside = False
            continue
        if inside:
            code.append(stripped[2:])
    if not found:
        sys.exit(f"{path}: no example between `// clang-format off` and "
                 "`// clang-format on` in the leading comment")
    indents = [len(l) - len(l.lstrip()) for l in code if l.strip()]
    margin = min(indents) if indents else 0
    return [l[margin:] for l in code]


def example(path, include):
    """The lines that compile the example atop `path` (included as
    `include`)."""
    with open(path) as header:
        text = header.read()
    # The header's first public project namespace (forward declarations of
    # `*_internal` types may come first); macro-only headers have none.
    names = re.findall(r"^namespace (accelerate[\w:]*) \{", text, re.M)
    public = [n for n in names if not n.endswith("_internal")]
    namespace = (public or names or ["accelerate"])[0]
    own = namespace + "::header_example_" + re.sub(r"\W", "_", include)
    code = extract(text, path)
    out = [f"// The example atop {include}.", f'#include "{include}"']
    out += [l for l in code if l.startswith("#include")]
    out += ["", f"namespace {own} {{", ""]
    out += [l for l in code if not l.startswith("#include")]
    out += ["", f"}}  // namespace {own}", ""]
    return out


def main():
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit("usage: header_example.py HEADER_PATH INCLUDE_PATH "
                 "[HEADER_PATH INCLUDE_PATH ...]")
    out = ["// Generated from the examples atop the package's headers; "
           "do not edit.", ""]
    for path, include in zip(args[::2], args[1::2]):
        out += example(path, include)
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
