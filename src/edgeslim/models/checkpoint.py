"""Checkpoint folders: ``weights.safetensors`` + ``model.json``. Loading never unpickles and,
by default, never imports code named by the file.

The JSON names the architecture and its arguments (plain JSON values). A registry name is
always accepted; a ``module:Class`` path (a user's own ``nn.Module`` subclass) is imported
only when the caller trusts it: ``load_checkpoint(..., trust_code=True)`` or an allow-list
of ``module:Class`` names, or the ``trusted_code(...)`` context (the CLI's ``edgeslim
--trust-code`` / ``--allow-class``). Structurally pruned models have smaller tensors than
their architecture's defaults; loading shrinks each layer to the saved shapes, so every later
step (eval, export, bench) sees the real, smaller model.

A checkpoint is written as one unit: both files are staged in ``FOLDER/.edgeslim-pending``,
the staging folder is renamed to ``FOLDER/.edgeslim-commit`` (the commit point), then the
files are moved into place. The next save or load finishes a committed write (roll forward)
and deletes an uncommitted one, so a crash leaves either the old checkpoint or the new one.
``model.json`` also records the sha256 of the weights, and loading refuses a folder whose
two files do not belong together.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import shutil
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Union

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from ..runtime.preprocess import Preprocess
from .registry import create, list_models, model_spec

WEIGHTS = "weights.safetensors"
META = "model.json"
FORMAT_VERSION = 1
PENDING = ".edgeslim-pending"  # a save in progress (discarded if found later)
COMMITTED = ".edgeslim-commit"  # a complete save not yet moved into place (finished if found later)
MAX_META_BYTES = 16 * 2**20  # model.json holds metadata only; a bigger one is not ours
CRASH_ENV = "EDGESLIM_TEST_CRASH_AT"  # tests: os._exit at this named step of save_checkpoint

# True: any importable nn.Module subclass; a frozenset: only these "module:Class" names.
CodeTrust = Union[bool, Iterable[str]]
_TRUST: ContextVar[bool | frozenset[str]] = ContextVar("edgeslim_trusted_code", default=False)


@dataclass
class Checkpoint:
    model: nn.Module
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self.meta.get("preprocess", {}))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["input_shape"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names", []))


# ---- which model classes a checkpoint may name -------------------------------------------

def _as_trust(trust: CodeTrust) -> bool | frozenset[str]:
    return trust if isinstance(trust, bool) else frozenset(trust)


@contextlib.contextmanager
def trusted_code(trust: CodeTrust = True) -> Iterator[None]:
    """Within the block, ``load_checkpoint`` (called by eval, export, prune, ...) may import
    the model classes a checkpoint names: any (``True``) or only the given ``module:Class``
    names. Only for checkpoints you trust: importing a module runs its code."""
    token = _TRUST.set(_as_trust(trust))
    try:
        yield
    finally:
        _TRUST.reset(token)


def current_code_trust() -> bool | list[str]:
    """The trust in effect (JSON-friendly), e.g. to hand on to a worker process."""
    trust = _TRUST.get()
    return trust if isinstance(trust, bool) else sorted(trust)


def _check_plain_json(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise CheckpointError(f"{where}: key {k!r} is not a string; model arguments must be plain JSON")
            _check_plain_json(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_plain_json(v, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        raise CheckpointError(f"{where}: {type(value).__name__} value; model arguments must be plain JSON "
                              "(strings, numbers, booleans, null, lists, objects)")


def _import_model_class(name: str, trust: bool | frozenset[str]) -> type[nn.Module]:
    if not (trust is True or (trust and name in trust)):
        raise CheckpointError(
            f"model.json names the class {name!r}, which is not a registered model; importing it would run "
            f"code from that module: if you trust this checkpoint pass trust_code=True or "
            f"trust_code=[{name!r}] to load_checkpoint (CLI: `edgeslim --allow-class {name} COMMAND ...` or "
            f"`edgeslim --trust-code COMMAND ...`), or pass model=<an instance of your model>")
    module, _, qualname = name.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as e:
        raise CheckpointError(f"cannot import model class {name!r} ({e}); pass model= to "
                              "load_checkpoint with an instance of your model") from None
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise CheckpointError(f"{name!r} is not an nn.Module subclass; a checkpoint can only name a model class")
    return obj


def architecture_of(model: nn.Module) -> dict[str, Any]:
    """How to rebuild ``model``: its registry entry, else its importable class path."""
    arch = getattr(model, "edgeslim_arch", None)
    if arch:
        return dict(arch)
    cls = type(model)
    return {"name": f"{cls.__module__}:{cls.__qualname__}", "kwargs": {}}


def build_architecture(arch: Any, trust_code: CodeTrust | None = None, pretrained: bool = False) -> nn.Module:
    """The model ``arch`` (``{"name", "kwargs"}`` from model.json) describes, with untrained
    weights (``pretrained``: a registry model's own pretrained weights, if it has any).
    Registry names only, unless ``trust_code`` (default: the ``trusted_code`` context)
    allows the named class."""
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise CheckpointError(f"architecture must be an object with a string 'name', got {arch!r:.80}")
    name, kwargs = arch["name"], arch.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"architecture.kwargs must be an object, got {type(kwargs).__name__}")
    _check_plain_json(kwargs, "architecture.kwargs")
    if ":" not in name:
        if name not in list_models():
            raise CheckpointError(f"model.json names the unknown model {name!r}; registered models: "
                                  f"{', '.join(list_models())}")
        try:  # weights about to be loaded replace any pretrained ones: none are read
            model = create(name, **(kwargs if pretrained else model_spec(name).without_pretrained(kwargs)))
        except TypeError as e:
            raise CheckpointError(f"model {name!r} does not take the arguments {sorted(kwargs)} ({e})") from None
        model.edgeslim_arch = dict(arch)
        return model
    trust = _TRUST.get() if trust_code is None else _as_trust(trust_code)
    cls = _import_model_class(name, trust)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise CheckpointError(f"cannot build {name!r} from its recorded arguments ({e}); pass model= to "
                              "load_checkpoint with an instance of your model") from None


# ---- writing one unit --------------------------------------------------------------------

def _plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or non-contiguous storage; tied tensors are saved twice.
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}


def _reached(step: str) -> None:
    """A named step of a save; crash tests make the process die here (os._exit: no cleanup)."""
    if os.environ.get(CRASH_ENV) == step:
        os._exit(75)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _move_committed_files(folder: Path) -> None:
    commit = folder / COMMITTED
    for name in (WEIGHTS, META):  # weights first: a reader never sees new metadata with old weights
        with contextlib.suppress(FileNotFoundError):  # already moved before a crash
            os.replace(commit / name, folder / name)
        _reached(f"moved-{name}")
    _fsync(folder)
    shutil.rmtree(commit, ignore_errors=True)


def recover_checkpoint(folder: str | Path) -> None:
    """Finish a save that reached its commit point, discard one that did not (both can be
    left by a killed process). Called by ``save_checkpoint`` and ``load_checkpoint``."""
    folder = Path(folder)
    if (folder / COMMITTED).is_dir():
        _move_committed_files(folder)
    if (folder / PENDING).exists():
        shutil.rmtree(folder / PENDING, ignore_errors=True)


def save_checkpoint(model: nn.Module, folder: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``weights.safetensors`` and ``model.json`` into ``folder`` as one unit: after a
    crash at any point the folder loads as the previous checkpoint or as this one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    recover_checkpoint(folder)
    staging = folder / PENDING
    staging.mkdir()
    try:
        save_file(_plain_state(model), str(staging / WEIGHTS))
    except Exception as e:  # safetensors reports a full disk as its own error type, without the file
        shutil.rmtree(staging, ignore_errors=True)
        raise OSError(f"cannot write {folder / WEIGHTS}: {e}; free some space or choose another folder") from None
    _fsync(staging / WEIGHTS)
    _reached("weights-staged")
    # "source" is where a loaded checkpoint came from: a folder is its own source, and a copied one
    # would send a pruned model's default outputs into the original's folder
    meta = {k: v for k, v in meta.items() if k != "source"}
    full = {"format_version": FORMAT_VERSION, "architecture": architecture_of(model), **meta,
            "weights_sha256": _sha256_file(staging / WEIGHTS)}  # last: a loaded meta's old digest is replaced
    with open(staging / META, "w", encoding="utf-8") as f:
        f.write(json.dumps(full, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    _fsync(staging)
    _reached("staged")
    os.rename(staging, folder / COMMITTED)  # the commit point
    _fsync(folder)
    _reached("committed")
    _move_committed_files(folder)
    return folder


# ---- loading -----------------------------------------------------------------------------

def _set_tensor(module: nn.Module, name: str, value: torch.Tensor) -> None:
    if name in module._parameters:
        module._parameters[name] = nn.Parameter(value, requires_grad=module._parameters[name].requires_grad)
    else:
        module._buffers[name] = value


def fit_modules_to_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Shrink (or grow) layers whose saved tensors have other shapes, keeping attributes
    such as ``out_channels`` and depthwise ``groups`` consistent with the new shapes."""
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        changed = False
        for tname, tensor in list(module._parameters.items()) + list(module._buffers.items()):
            key = prefix + tname
            if tensor is not None and key in state and state[key].shape != tensor.shape:
                _set_tensor(module, tname, torch.empty_like(state[key]))
                changed = True
        if not changed:
            continue
        if isinstance(module, nn.Conv2d):
            w = module.weight
            depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
            module.out_channels = w.shape[0]
            if depthwise:
                module.groups = module.in_channels = w.shape[0]
            else:
                module.in_channels = w.shape[1] * module.groups
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = module.weight.shape
        elif isinstance(module, nn.modules.batchnorm._NormBase):
            module.num_features = module.running_mean.shape[0] if module.running_mean is not None \
                else module.weight.shape[0]


def _read_meta(path: Path) -> dict[str, Any]:
    if path.stat().st_size > MAX_META_BYTES:
        raise CheckpointError(f"{path}: {path.stat().st_size:,} bytes, more than the {MAX_META_BYTES:,} a "
                              "model.json may have; not an edgeslim checkpoint")
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: not a JSON document ({e}); model.json is written by edgeslim") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: must hold a JSON object, not {type(meta).__name__}")
    return meta


def load_checkpoint(folder: str | Path, model: nn.Module | None = None,
                    trust_code: CodeTrust | None = None) -> Checkpoint:
    """Load a checkpoint folder. ``model`` overrides the recorded architecture.

    ``trust_code``: ``True`` lets model.json name any importable ``nn.Module`` subclass
    (importing runs its module's code), a list allows only those ``module:Class`` names;
    default: the ``trusted_code`` context, else registry models only."""
    folder = Path(folder)
    if folder.is_file() and folder.name in (WEIGHTS, META):
        folder = folder.parent
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a checkpoint folder (written by `edgeslim train`)")
    with contextlib.suppress(OSError):  # a read-only folder: the files in place are read as they are
        recover_checkpoint(folder)
    for f in (WEIGHTS, META):
        if not (folder / f).is_file():
            raise CheckpointError(f"{folder}: missing {f}; a checkpoint folder holds {WEIGHTS} and {META} "
                                  "(written by `edgeslim train`)")
    meta = _read_meta(folder / META)
    recorded = meta.get("weights_sha256")
    if recorded is not None and recorded != _sha256_file(folder / WEIGHTS):
        raise CheckpointError(f"{folder}: {WEIGHTS} does not match the sha256 recorded in {META} (corrupted, "
                              "replaced, or mixed with another checkpoint's files); save or copy the checkpoint again")
    try:
        state = load_file(str(folder / WEIGHTS))
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{folder / WEIGHTS}: not a valid safetensors file ({e})") from None
    if model is None:
        model = build_architecture(meta.get("architecture"), trust_code)
    fit_modules_to_state(model, state)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor shape fit_modules_to_state could not reconcile
        raise CheckpointError(f"{folder}: weights do not fit the architecture ({str(e).splitlines()[0]})") from None
    if missing or unexpected:
        raise CheckpointError(f"{folder}: weights do not match the architecture "
                              f"(missing {missing[:5]}, unexpected {unexpected[:5]}); for your own model class, "
                              "pass model=<an instance of it> to load_checkpoint")
    model.eval()
    return Checkpoint(model, meta)
