"""Compiles the usage example atop each public header.

A BUILD file ends with `header_examples()`: for every public `cc_library` so
far in the package, each header whose leading comment holds an example
between `// clang-format off` and `// clang-format on` gets a generated
`<header>_example.cc` (tools/header_example.py) and a library compiling it
against that library and its dependencies. `bazel test //...` builds them, so
an example that no longer compiles fails CI.
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
    for name, rule in public_cc_libraries(default_public, include_private):
        headers = list(rule.get("hdrs", []))
        if include_private:
            headers += [f for f in rule.get("srcs", []) if str(f).endswith(".h")]
        for hdr in headers:
            header = str(hdr).split(":")[-1]
            if header.startswith("internal/"):
                continue
            if with_examples != None and header not in with_examples:
                continue
            stem = header.replace("/", "_").replace(".h", "")
            target = stem + "_example"
            if header.endswith(".pb.h") or native.existing_rule(target + "_cc"):
                continue  # Listed by two libraries.
            path = (package + "/" + header) if package else header
            native.genrule(
                name = target + "_cc",
                srcs = [header],
                outs = [target + ".cc"],
                tools = ["//tools:header_example.py"],
                cmd = "python3 $(location //tools:header_example.py) " +
                      "$(location %s) %s > $@" % (header, path),
                testonly = True,
            )
            native.cc_library(
                name = target,
                testonly = True,
                srcs = [target + ".cc"],
                deps = [":" + name] + list(rule.get("deps", [])),
                tags = ["header_example"],
            )
