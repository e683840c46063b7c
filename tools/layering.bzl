"""Layering tests: each public library reaches only the packages it may use.

The architecture in one table (`ALLOWED_PACKAGES`): for every top-level
package, the project packages its libraries may depend on. A BUILD file ends
with `layering_tests()`, which adds one test per public `cc_library` of the
package, so a new library is covered without anyone remembering to.
"""

load("//tools:public_libraries.bzl", "public_cc_libraries")

# Dependencies flow one way: //state at the bottom; data, precision,
# sharding, bigmodel and trackers on it; checkpoint on bigmodel (safetensors)
# and state; the Accelerator facade above them (trackers included);
# //launch links no library that needs LibTorch (checked by its own test):
# from //precision only the names (//precision:mixed_precision).
ALLOWED_PACKAGES = {
    "accelerator": ["accelerator", "bigmodel", "checkpoint", "data", "precision", "sharding", "state", "third_party", "trackers"],
    "bigmodel": ["bigmodel", "state", "third_party"],
    "checkpoint": ["bigmodel", "checkpoint", "state", "third_party"],
    "data": ["data", "state", "third_party"],
    "launch": ["checkpoint", "launch", "precision", "state", "third_party"],
    "precision": ["precision", "state", "third_party"],
    "sharding": ["sharding", "state", "third_party"],
    "state": ["state", "third_party"],
    "testing": ["testing", "state", "third_party"],
    "trackers": ["trackers", "state", "third_party"],
}

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
        testonly = True,
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

def layering_tests(default_public = False):
    """Adds `<library>_layering_test` for every public cc_library so far in
    the calling package. Call it last in the BUILD file.

    Args:
      default_public: whether the package's `default_visibility` is public
        (rules without their own `visibility` are then public).
    """
    package = native.package_name()
    allowed = ALLOWED_PACKAGES[package.split("/")[0]]
    for name, rule in public_cc_libraries(default_public):
        layering_test(
            name = name + "_layering_test",
            library = "//%s:%s" % (package, name),
            allowed = allowed,
        )
