"""The external repositories accelerate-cpp builds with, for any workspace.

Our own WORKSPACE calls this, and so does a workspace that depends on one of
our libraries (README, "Using one library"):

    local_repository(
        name = "accelerate_cpp",  # This name: our BUILD files refer to it.
        path = "/path/to/accelerate-cpp",
    )

    load("@accelerate_cpp//third_party:repositories.bzl",
         "accelerate_cpp_repositories")

    accelerate_cpp_repositories(path = "/path/to/accelerate-cpp")

Everything is local: the rule sets and C++ libraries come from Debian
packages (third_party/debian_packages.txt), LibTorch from the torch wheel in
the checkout's `.venv/` (tools/setup creates both). A repository the calling
workspace already defines is left as it is.
"""

load("@accelerate_cpp//third_party:torch_venv.bzl", "torch_venv")

def _maybe(rule, name, **kwargs):
    if not native.existing_rule(name):
        rule(name = name, **kwargs)

def accelerate_cpp_repositories(path):
    """Defines the repositories our libraries need.

    Args:
      path: the accelerate-cpp checkout, absolute or relative to the calling
        workspace's root ("." in our own).
    """

    # Bazel 4.2.3 loads @rules_cc; Debian's bazel-rules-cc is too new for it,
    # so a small local copy forwards to the native rules.
    _maybe(native.local_repository, "rules_cc", path = path + "/third_party/rules_cc")
    _maybe(native.local_repository, "rules_java", path = "/usr/share/bazel/rules/java")
    _maybe(native.local_repository, "platforms", path = "/usr/share/bazel/tools/platforms")
    _maybe(native.local_repository, "bazel_skylib", path = "/usr/share/bazel/tools/skylib")
    _maybe(
        native.local_repository,
        "remote_coverage_tools",
        path = path + "/third_party/remote_coverage_tools",
    )

    # Protobuf 3.21 from Debian: protoc, the runtime and the well-known types.
    _maybe(
        native.new_local_repository,
        "com_google_protobuf",
        build_file = "@accelerate_cpp//third_party:protobuf.BUILD",
        path = "/usr",
    )

    # LibTorch and the peers' Python, from the torch package in .venv/; the
    # CUDA LibTorch of `--config=cuda` from .venv-cuda/ (tools/setup --cuda).
    _maybe(torch_venv, "torch_venv")
    _maybe(
        torch_venv,
        "torch_venv_cuda",
        cuda = True,
        default_folder = ".venv-cuda",
        env_variable = "ACCELERATE_CUDA_VENV",
    )

    # The remaining system libraries (Abseil, GoogleTest, yaml-cpp, ...).
    _maybe(
        native.new_local_repository,
        "system_libs",
        build_file = "@accelerate_cpp//third_party:system_libs.BUILD",
        path = "/usr",
    )
