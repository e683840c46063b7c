"""The public cc_library rules of the calling package, for checks that cover
every library without anyone listing them (layering, header examples)."""

def _is_public(rule, default_public):
    visibility = rule.get("visibility", []) or []
    if not visibility:
        return default_public
    for label in visibility:
        if str(label).endswith("//visibility:public"):
            return True
    return False

def public_cc_libraries(default_public = False, include_private = False):
    """(name, rule) of each public cc_library defined so far in the package.

    Args:
      default_public: whether the package's `default_visibility` is public
        (rules without their own `visibility` are then public).
      include_private: every cc_library, public or not (for a package whose
        product is a binary, such as //launch).
    """
    return [
        (name, rule)
        for name, rule in sorted(native.existing_rules().items())
        if rule["kind"] == "cc_library" and
           (include_private or _is_public(rule, default_public))
    ]
