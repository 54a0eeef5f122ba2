"""attnkit: the helper package of an interactive course on attention.

Everything public is importable from here, e.g. `from attnkit import scaled_dot_product_attention`.
Submodules load on first use, so `import attnkit` is instant and prints nothing; widgets and
plotting (matplotlib, ipywidgets) load only when asked for.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# One concept per module; each lists its public names in __all__.
_MODULES = (
    "attention",
    "masks",
    "scoring",
    "hard_attention",
    "local_attention",
    "mha",
    "kv_cache",
    "gpt",
    "plot",
    "widgets",
    "diagrams",
    "checks",
)


def __getattr__(name: str):
    for module_name in _MODULES:
        try:
            module = importlib.import_module(f"attnkit.{module_name}")
        except ModuleNotFoundError as err:  # a module not written yet, or an optional extra missing
            if err.name != f"attnkit.{module_name}":
                raise
            continue
        if name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            globals()[name] = value  # cache: later lookups are plain attribute reads
            return value
    raise AttributeError(f"module 'attnkit' has no attribute {name!r}")
