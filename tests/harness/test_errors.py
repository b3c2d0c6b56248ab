"""One root: every exception class the harness defines derives from HarnessError, so a caller (the CLI,
the pytest plugin, a user's script) tells "the lab could not do it" from a bug with one except."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import harness
from harness.errors import HarnessError


def test_every_harness_error_derives_from_harness_error() -> None:
    found = []
    for info in pkgutil.walk_packages(harness.__path__, "harness."):
        if info.name.endswith("__main__") and info.name != "harness.__main__":
            continue
        mod = importlib.import_module(info.name)
        for _name, obj in inspect.getmembers(mod, inspect.isclass):
            if obj.__module__ == info.name and issubclass(obj, BaseException):
                found.append(obj)
    assert len(found) >= 10, found  # the walk did reach the packages
    strays = [f"{c.__module__}.{c.__qualname__}" for c in found if not issubclass(c, HarnessError)]
    assert strays == []
