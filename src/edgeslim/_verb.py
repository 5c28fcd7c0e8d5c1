"""Packages that are also their verb: ``edgeslim.prune(model, config, data=...)`` calls
``edgeslim.prune.api.prune``. One mechanism for every verb whose name is a sub-package's."""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _VerbPackage(types.ModuleType):
    """A package whose call runs its verb (imported on the first call, so that importing the package
    stays as light as before)."""
    __verb__: str  # "module:function"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module, name = self.__verb__.split(":")
        return getattr(importlib.import_module(module), name)(*args, **kwargs)


def callable_package(package: str, verb: str) -> None:
    """Make ``package`` (a name in ``sys.modules``) callable as ``verb`` (``"module:function"``)."""
    module = sys.modules[package]
    module.__class__ = _VerbPackage
    module.__verb__ = verb
