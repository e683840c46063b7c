"""Compiles the usage example atop each public header.

A BUILD file ends with `header_examples()`: for every public `cc_library` so
far in the package, each header whose leading comment holds an example
between `// clang-format off` and `// clang-format on` goes into the
package's generated `header_examples.cc` (tools/header_example.py), compiled
by the `:header_examples` library against those libraries and their
dependencies. `bazel test //...` builds it, so an example that no longer
compiles fails CI. One file per package, not one per header: each compile
parses LibTorch's headers again, and 97 of them made up half of a cold build.
"""

load("//tools:public_libraries.bzl", "public_cc_libraries")

def header_examples(
        with_examples = None,
        default_public = False,
        include_private = False):
    """Compiles the examples of the package's public headers.

    Args:
      with_examples: the headers (package-relative) that carry an example;
        None means every public header must.
      default_public: whether the package's `default_visibility` is public.
      include_private: the headers of private libraries too, and the
        headers among a library's sources.
    """
    package = native.package_name()
    headers = []  # Package-relative, each once (two libraries may list one).
    deps = []
    for name, rule in public_cc_libraries(default_public, include_private):
        listed = list(rule.get("hdrs", []))
        if include_private:
            listed += [f for f in rule.get("srcs", []) if str(f).endswith(".h")]
        found = False
        for hdr in listed:
            header = str(hdr).split(":")[-1]
            if header.startswith("internal/") or header.endswith(".pb.h"):
                continue
            if with_examples != None and header not in with_examples:
                continue
            found = True
            if header not in headers:
                headers.append(header)
        if found:
            for dep in [":" + name] + list(rule.get("deps", [])):
                if str(dep) not in deps:
                    deps.append(str(dep))
    if not headers:
        return
    args = " ".join([
        "$(location %s) %s" % (h, (package + "/" + h) if package else h)
        for h in headers
    ])
    native.genrule(
        name = "header_examples_cc",
        srcs = headers,
        outs = ["header_examples.cc"],
        tools = ["//tools:header_example.py"],
        cmd = "python3 $(location //tools:header_example.py) %s > $@" % args,
        testonly = True,
    )
    native.cc_library(
        name = "header_examples",
        testonly = True,
        srcs = ["header_examples.cc"],
        deps = deps,
        tags = ["header_example"],
    )
