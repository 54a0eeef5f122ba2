"""The public API: every module's __all__ is reachable from `attnkit`, unambiguously, and cheaply."""

import importlib
import inspect
import subprocess
import sys

import attnkit

MODULES = {name: importlib.import_module(f"attnkit.{name}") for name in attnkit._MODULES}


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
                assert "Shapes:" in doc or "shape" in doc.lower(), f"{module.__name__}.{name}: no Shapes: section"
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
