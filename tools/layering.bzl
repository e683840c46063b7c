"""A test that a library depends only on the project packages it may use."""

def layering_test(name, library, allowed):
    """Fails when `library` reaches a project package outside `allowed`.

    Args:
      name: the test's name.
      library: the label of the library, e.g. "//data:data".
      allowed: package names it may depend on (itself included), e.g.
        ["data", "state", "third_party"].
    """
    native.genquery(
        name = name + "_deps",
        expression = "deps(%s)" % library,
        scope = [library],
    )
    native.sh_test(
        name = name,
        size = "small",
        srcs = ["//tools:layering_check.sh"],
        args = [
            "$(location :%s_deps)" % name,
            library,
            "|".join(allowed),
        ],
        data = [":%s_deps" % name],
    )
