"""The public API: every module's __all__ is reachable from `attnkit`, unambiguously, and cheaply."""

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import attnkit

MODULES = {name: importlib.import_module(f"attnkit.{name}") for name in attnkit._EXPORTS}


def test_the_export_map_lists_exactly_each_modules_public_names():
    for name, module in MODULES.items():
        assert tuple(sorted(attnkit._EXPORTS[name])) == tuple(sorted(module.__all__)), (
            f"attnkit/__init__.py's _EXPORTS[{name!r}] must be {tuple(sorted(module.__all__))}")
    modules = {p.stem for p in Path(attnkit.__file__).parent.glob("[a-z]*.py")} | {"checks"}
    tools = {"cli", "release", "toy_grammar", "course", "nbgrader_export"}  # command-line tools, not course API
    assert modules - tools - set(attnkit._EXPORTS) == set(), "a module missing from the map"


def test_dir_and_tab_completion_list_the_public_api():
    listed = dir(attnkit)
    assert set(attnkit.__all__) <= set(listed)
    assert "scaled_dot_product_attention" in listed and "KVCache" in listed


def test_importing_one_name_imports_only_its_module():
    code = ("import sys; from attnkit import causal_mask; "
            "print(sorted(m for m in sys.modules if m.startswith('attnkit.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['attnkit._validate', 'attnkit.masks']", out.stdout


def test_every_public_name_resolves_to_its_module_object():
    for module in MODULES.values():
        for name in module.__all__:
            assert getattr(attnkit, name) is getattr(module, name), f"attnkit.{name} != {module.__name__}.{name}"


def test_no_public_name_is_defined_twice_or_shadows_a_module():
    owners = {}
    for module_name, module in MODULES.items():
        for name in module.__all__:
            assert name not in owners, f"{name} is public in both {owners[name]} and {module_name}"
            assert name not in MODULES, f"{module_name}.{name} is also a module name: `from attnkit import {name}`"
            owners[name] = module_name


def test_public_functions_document_shapes_and_their_chapter():
    for module in MODULES.values():
        if module.__name__ == "attnkit.checks":
            continue
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj) and not name.endswith("_data"):
                doc = inspect.getdoc(obj) or ""
                assert "\nShapes:" in doc or doc.startswith("Shapes:") or "\n    Shapes:" in doc, (
                    f"{module.__name__}.{name}: no `Shapes:` section")
                assert "chapters/" in doc, f"{module.__name__}.{name}: no backlink to its chapter"


def test_import_is_light_and_silent():
    code = "import sys, attnkit; print(sorted(m for m in ('torch', 'matplotlib', 'ipywidgets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]" and out.stderr == ""


def test_unknown_name_is_an_attribute_error():
    try:
        attnkit.no_such_thing  # noqa: B018
    except AttributeError as err:
        assert "no attribute 'no_such_thing'" in str(err)
    else:
        raise AssertionError("expected AttributeError")
