"""Small file helpers shared by every package: atomic writes, JSON and safe YAML.

Every temporary file edgeslim writes is named ``.NAME.<random>.tmp`` beside its target
(``temp_path``), so an interrupted run leaves only files that ``remove_stale_temps`` knows
are ours.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .errors import ConfigError

# .NAME.<random>.tmp (temp_path / mkstemp) and .NAME.tmp (older checkpoint writer)
_TEMP_NAME = re.compile(r"^\..+\.tmp$")


@contextlib.contextmanager
def output_folder(path: str | os.PathLike, useful: Callable[[Path], bool]) -> Iterator[Path]:
    """Create the folder ``path`` (and missing parents) for a run's outputs; if the run fails
    before ``useful(path)`` is true (nothing worth keeping: no model, no finished trial), remove
    again what was created here, so a failed run leaves no empty folder. A folder that was
    already there is never removed."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if missing and not useful(path):
            shutil.rmtree(missing[-1], ignore_errors=True)  # the top-most folder this call created
        raise


def removes_new_output_on_failure(useful: Callable[[Path], bool], arg: str = "out"):
    """Decorate a function writing into the folder passed as ``arg``: it runs inside
    ``output_folder(that folder, useful)``."""
    import functools
    import inspect

    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            with output_folder(signature.bind(*args, **kwargs).arguments[arg], useful):
                return fn(*args, **kwargs)
        return run
    return decorate


def oserror_for(e: OSError, path: Path) -> OSError:
    """The same error (same errno, same subclass) naming the file the caller asked for, not
    the hidden temporary file, so a disk-full message says which output failed."""
    return OSError(e.errno, e.strerror or str(e), str(path)) if e.errno else e


@contextlib.contextmanager
def temp_path(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh ``.NAME.<random>.tmp`` path beside ``path``, removed on exit whatever happens
    (for writers that need a file name, e.g. torch.onnx.export)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_temp(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the new one."""
    return next(iter(atomic_write_files({path: data})))


def atomic_write_files(files: Mapping[str | os.PathLike, bytes]) -> list[Path]:
    """Write several files as one unit: every file is written to a temporary name first, then
    all are renamed. On any failure no temporary file is left and none of the targets is
    half-written; targets already renamed by this call are removed, so a reader never finds
    one file of a set without the others (e.g. head.onnx without tail.onnx)."""
    targets = [Path(p) for p in files]
    temps: list[Path] = []
    done: list[Path] = []
    try:
        for path, data in zip(targets, files.values()):
            try:
                temps.append(_write_temp(path, data))
            except OSError as e:
                raise oserror_for(e, path) from e
        for tmp, path in zip(temps, targets):
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise oserror_for(e, path) from e
            done.append(path)
    except BaseException:
        for p in temps:
            p.unlink(missing_ok=True)
        if len(targets) > 1:
            for p in done:
                p.unlink(missing_ok=True)
        raise
    return targets


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files an interrupted edgeslim run left under ``folder`` (only
    names edgeslim writes: ``.NAME.<random>.tmp`` and ``.NAME.tmp``). Returns what was removed."""
    removed = []
    for p in Path(folder).rglob(".*.tmp"):
        if p.is_file() and _TEMP_NAME.match(p.name):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---- YAML configs (recipes, device/network profiles, search settings) ----

def _config_loader():
    """PyYAML's SafeLoader (plain values only: no python/object tags, so nothing in a file
    chooses code to run) that also reads YAML 1.2 floats without a dot, e.g. ``lr: 1e-3``,
    which YAML 1.1 (PyYAML) would otherwise read as the string '1e-3'."""
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        pass

    ConfigLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))
    return ConfigLoader


def parse_yaml_mapping(text: str, source: str | os.PathLike, what: str, expected: str) -> dict[str, Any]:
    """One YAML document that must be a mapping (empty: ``{}``). ``what`` names the kind of
    file ("recipe", "profile file"...), ``expected`` the keys it should hold; every error
    is a ConfigError naming the file."""
    import yaml

    try:
        data = yaml.load(text, Loader=_config_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.constructor.ConstructorError as e:
        where = f" at line {e.problem_mark.line + 1}" if e.problem_mark else ""
        raise ConfigError(f"{what} {source} uses a YAML tag that is not allowed{where} ({e.problem}); config "
                          "files hold plain values only (numbers, strings, lists, mappings)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{what} {source} is not valid YAML{where}: {problem} (fix the syntax)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {source} must be a mapping with {expected}, not a YAML {_yaml_kind(data)}")
    return data


def _yaml_kind(data: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(data),
                                                                                             type(data).__name__)


def read_yaml_mapping(path: str | os.PathLike, what: str, expected: str) -> dict[str, Any]:
    """``parse_yaml_mapping`` of a file; a missing or non-UTF-8 file is a ConfigError naming it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path} (check the path)") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a folder (give a YAML file)") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {e.start} is 0x{raw[e.start]:02x}); save it "
                          "as UTF-8") from None
    return parse_yaml_mapping(text, path, what, expected)
