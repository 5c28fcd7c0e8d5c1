"""``edgeslim export --format best``: export every format whose extra is installed, benchmark
them side by side on this machine, keep the fastest one that agrees with PyTorch and say why."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..errors import EdgeslimError, MissingExtraError
from ..models.checkpoint import load_checkpoint

AGREEMENT_FLOOR = 0.99  # top-1 agreement with the ONNX export a candidate needs to be kept


def export_best(folder: str | Path, out: str | Path | None = None, parity_samples: int = 256,
                data=None, data_dir: str | Path | None = None, int8: bool = False, batch: int = 1,
                threads: int | None = None) -> dict:
    """Returns the winner's export report plus ``candidates`` (each format's export or the
    reason it was skipped), ``benchmark`` (the side-by-side run) and ``reason``. ``out``: the
    winner's path without its suffix (default ``FOLDER/model``); its suffix is the format's."""
    from ..runtime import benchmark
    from .api import SUFFIXES, _export, _parity_inputs, written_files

    stem = Path(out).with_suffix("") if out else Path(folder) / "model"
    ckpt = load_checkpoint(folder)
    inputs, _ = _parity_inputs(ckpt.meta, ckpt.input_shape, parity_samples, data, data_dir)
    candidates: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="edgeslim-best-") as tmp:
        for fmt, suffix in SUFFIXES.items():
            try:
                candidates[fmt] = _export(folder, Path(tmp) / f"model{suffix}", fmt, parity_samples, data,
                                          data_dir, "auto", int8)
            except (MissingExtraError, EdgeslimError) as e:  # not installed here, or refused by parity
                candidates[fmt] = {"skipped": str(e)}
        exported = [fmt for fmt, c in candidates.items() if "path" in c]
        if not exported:
            raise EdgeslimError("no format could be exported: " +
                                "; ".join(f"{k}: {v['skipped']}" for k, v in candidates.items()))
        bench = benchmark([candidates[f]["path"] for f in exported], batch=batch, threads=threads,
                          require_signature=False, agreement_inputs=inputs.numpy())
        agreeing = [(f, b) for f, b in zip(exported, bench) if b["top1_agreement"] >= AGREEMENT_FLOOR]
        winner, best = min(agreeing, key=lambda fb: fb[1]["p50_ms"])
        others = ", ".join(f"{f} {b['p50_ms']:.3f} ms" for f, b in zip(exported, bench) if f != winner)
        reason = (f"{winner} is the fastest that agrees with {exported[0]} (top-1 >= {AGREEMENT_FLOOR}): p50 "
                  f"{best['p50_ms']:.3f} ms at batch {batch}" + (f" vs {others}" if others else ""))
        target = stem.with_name(stem.name + SUFFIXES[winner])
        target.parent.mkdir(parents=True, exist_ok=True)
        winner_path = Path(candidates[winner]["path"])
        for src in written_files(winner_path):  # model.xml + model.bin, model.pte + model.pte.json, ...
            dest = target.with_suffix(".bin") if src.suffix == ".bin" else \
                target.with_name(target.name + src.name[len(winner_path.name):])
            shutil.move(str(src), str(dest))
    result = {**candidates[winner], "path": str(target), "format": winner, "reason": reason,
              "candidates": {f: {k: v for k, v in c.items() if k != "path"} for f, c in candidates.items()},
              "benchmark": bench}
    return result
