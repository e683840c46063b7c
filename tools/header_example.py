#!/usr/bin/env python3
"""Turns the usage example atop a header into a C++ file that compiles it.

The example is the code between `// clang-format off` and
`// clang-format on` lines in the header's leading comment (the markers also
keep clang-format from reflowing it). Its `#include` lines go first; the rest
(functions, types) is placed in a namespace nested in the header's own, so
the example's unqualified names resolve as they would for a user of that
namespace.

Usage: header_example.py HEADER_PATH INCLUDE_PATH > example.cc
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


def main():
    path, include = sys.argv[1], sys.argv[2]
    with open(path) as header:
        text = header.read()
    # The header's first public project namespace (forward declarations of
    # `*_internal` types may come first); macro-only headers have none.
    names = re.findall(r"^namespace (accelerate[\w:]*) \{", text, re.M)
    public = [n for n in names if not n.endswith("_internal")]
    namespace = (public or names or ["accelerate"])[0]
    code = extract(text, path)
    includes = [l for l in code if l.startswith("#include")]
    body = [l for l in code if not l.startswith("#include")]
    out = [f"// Generated from the example atop {include}; do not edit.",
           f'#include "{include}"', ""]
    out += includes
    out += ["", f"namespace {namespace}::header_example {{", ""]
    out += body
    out += ["", f"}}  // namespace {namespace}::header_example", ""]
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
