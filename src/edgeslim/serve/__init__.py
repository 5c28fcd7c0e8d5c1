"""Serving: the inference server (FastAPI + uvicorn) and the torch-free device client.

``create_app``, ``serve``, ``serve_in_thread``, ``ServeSettings``, ``BindSettings`` and
``make_settings`` load on first use: this package file imports nothing heavy, so a device can use
``edgeslim.serve.client`` without FastAPI.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"create_app": "app", "serve": "server", "serve_in_thread": "server", "ServeSettings": "config",
         "BindSettings": "config", "make_settings": "config", "load_token": "auth"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
