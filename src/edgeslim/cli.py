"""The ``edgeslim`` command line. Every command is a thin call into the library."""
from __future__ import annotations

import errno
import json
import os
import re
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from .errors import EdgeslimError
from .report.tables import console_width

# Plain (click) help: typer's rich option tables cut long option names ("--finetune-augm…")
# in any terminal narrower than about 120 columns; click's list wraps the text instead.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Compress PyTorch models and run them on edge devices.")
console = Console(width=console_width(sys.stdout))  # tables fit it: see report.tables.rich_table
err = Console(stderr=True, width=console_width(sys.stderr))


@app.callback()
def _global_options(ctx: typer.Context,
                    debug: bool = typer.Option(False, "--debug", help="show the full traceback of an error"),
                    trust_code: bool = typer.Option(
                        False, "--trust-code",
                        help="let checkpoints (eval, export, pack, prune, quantize, compress, distill, search) "
                             "name your own model class as module:Class: importing it runs that module's code, so "
                             "use only for checkpoints you trust (default: registered models only). Give it before "
                             "the command: edgeslim --trust-code eval CKPT"),
                    allow_class: List[str] = typer.Option(
                        [], "--allow-class", metavar="MODULE:CLASS",
                        help="like --trust-code, for this one nn.Module subclass only (repeatable)")) -> None:
    """Compress PyTorch models and run them on edge devices."""
    _DEBUG["on"] = debug
    # One option for every command that loads a checkpoint: it sets the library's trust
    # context for the duration of the command (edgeslim.models.trusted_code).
    if trust_code or allow_class:
        from .models.checkpoint import trusted_code

        ctx.with_resource(trusted_code(True if trust_code else allow_class))
# ONNX Runtime threads; unset: its default (all cores)
_THREADS_OPT = typer.Option(None, min=1, help="ONNX Runtime threads (default: all cores)")
# Every command that takes a model takes the same sources (edgeslim.models.resolve_model).
_MODEL_HELP = ("checkpoint folder, or registry model NAME[,key=value...] (e.g. efficientnet-lite0, "
               "resnet18,num_classes=10,small_input=true), or module:Class with --trust-code")
_WEIGHTS_OPT = typer.Option(None, "--weights", help="safetensors state_dict loaded into the model key for key "
                                                    "(e.g. torchvision weights into resnet18)")


def _model_source(model, weights: Optional[Path]):
    """The model argument for the library, which resolves names and folders itself; with
    --weights it is resolved here, once, with the weights loaded."""
    if weights is None:
        return model
    from .models import resolve_model

    return resolve_model(model, weights)


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


@app.command("models")
def models_cmd() -> None:
    """List the registered models."""
    from .models import list_models, model_spec

    for name in list_models():
        console.print(f"[bold]{name}[/bold]: {model_spec(name).description}")


@app.command()
def train(model: str = typer.Option("seed-cnn", help="registered model name (see `edgeslim models`; fitted to the "
                                                   "data set), or any model source to train further: " + _MODEL_HELP),
          weights: Optional[Path] = _WEIGHTS_OPT,
          dataset: str = typer.Option("fashion-mnist", help="fashion-mnist, digits, or an image folder"),
          epochs: int = typer.Option(10, min=0), batch_size: int = typer.Option(128, min=1),
          lr: float = typer.Option(2e-3), seed: int = typer.Option(0),
          hflip: bool = typer.Option(False, help="random horizontal flips"),
          shift: bool = typer.Option(False, help="random 2-pixel shifts"),
          val_samples: Optional[int] = typer.Option(
              None, min=0, help="training samples held out to pick the best epoch and, later, to judge "
                                "compression (default: a tenth, at most 5000)"),
          data_dir: Optional[Path] = typer.Option(None, help="folder with the data set files"),
          out: Path = typer.Option(..., help="checkpoint folder to write")) -> None:
    """Train a model and write a checkpoint folder (weights.safetensors + model.json)."""
    import edgeslim

    config = edgeslim.TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, augment=shift, hflip=hflip)
    m = edgeslim.train(_model_source(model, weights), config, dataset, out=out, data_dir=data_dir,
                       val_samples=val_samples).summary
    console.print(f"test accuracy {m['accuracy']:.4f}, loss {m['loss']:.4f} "
                  f"({m['train_seconds']:.0f} s); checkpoint written to {out}")


@app.command("eval")
def eval_cmd(checkpoint: Path = typer.Argument(..., help="an exported .onnx / .eslim file, or " + _MODEL_HELP),
             weights: Optional[Path] = _WEIGHTS_OPT,
             dataset: Optional[str] = typer.Option(
                 None, help="fashion-mnist, digits, a class-folder tree (its test split), or a path read in "
                            "batches: a folder of images with labels.tsv / labels.csv, .npy arrays (x.npy + y.npy)"),
             data_dir: Optional[Path] = None,
             limit: Optional[int] = typer.Option(None, min=1, help="evaluate on the first N test samples"),
             as_json: bool = typer.Option(False, "--json", help="print one JSON object")) -> None:
    """Accuracy, loss, per-class accuracy, params, non-zeros, MACs and bytes of a checkpoint, or of
    a deployable file run by ONNX Runtime (the on-device path)."""
    import edgeslim
    from .report import rich_table

    r = edgeslim.evaluate(_model_source(checkpoint, weights), edgeslim.Evaluate(limit=limit), dataset,
                          data_dir=data_dir, progress=not as_json).summary
    if as_json:
        return _print_json(r)
    keys = ["accuracy", "top5", "loss", "params", "nonzero_params", "sparsity", "macs", "bytes", "samples"]
    console.print(rich_table([{"metric": k, "value": r[k]} for k in keys if k in r], title=str(checkpoint)))
    per_class = [{"class": n, "accuracy": a} for n, a in zip(r["class_names"], r["per_class_accuracy"])]
    console.print(rich_table(per_class, title="per-class accuracy"))


@app.command()
def export(checkpoint: Path = typer.Argument(..., help=_MODEL_HELP + "; or an .onnx file, for --format openvino"),
           weights: Optional[Path] = _WEIGHTS_OPT,
           fmt: str = typer.Option("onnx", "--format", help="onnx | openvino | tflite | executorch | best (export "
                                                             "every installed format, keep the fastest that agrees)"),
           out: Optional[Path] = typer.Option(None, help="output file (default: CHECKPOINT/model.onnx, .xml, "
                                                          ".tflite or .pte)"),
           int8: bool = typer.Option(False, "--int8", help="int8: our static QDQ for onnx/openvino, "
                                                           "ai-edge-quantizer for tflite, XNNPACK's PT2E for "
                                                           "executorch"),
           data_dir: Optional[Path] = None,
           optimize: str = typer.Option("auto", help="exact graph rewrites for ONNX Runtime: auto (keep those "
                                                     "not measured slower here at batch 1 or 64), always, never"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Export a checkpoint (ONNX, OpenVINO IR, LiteRT .tflite, ExecuTorch .pte) and check parity with PyTorch.
    Text models (all-minilm-l6-v2, hf:PATH, a text checkpoint): ONNX with int64 input_ids/attention_mask,
    dynamic batch and sequence axes, tokenizer.json beside the file and inside it."""
    import edgeslim
    from .models.text import resolve_text_model

    text_model = resolve_text_model(checkpoint)
    if text_model is not None:
        return _export_text(checkpoint, text_model, out, as_json)
    r = edgeslim.export(_model_source(checkpoint, weights), edgeslim.Export(format=fmt, int8=int8, optimize=optimize),
                        out=out, data_dir=data_dir).summary
    if as_json:
        return _print_json(r)
    if "candidates" in r:
        for name, c in r["candidates"].items():
            if "skipped" in c:
                err.print(f"[yellow]{name}: skipped ({c['skipped']})[/yellow]")
    folded = f"; folded max-pool into conv: {', '.join(r['folded_conv_pool'])}" if r.get("folded_conv_pool") else ""
    console.print(f"wrote {r['path']} ({r['bytes']:,} bytes); parity vs {r['parity_reference']} on {r['samples']} "
                  f"{r['parity_inputs']}: max |diff| {r['max_abs_diff']:.2e}, top-1 agreement "
                  f"{r['top1_agreement']:.4f}{folded}")
    if "reason" in r:
        console.print(r["reason"])


def _export_text(spec: Path, text_model, out: Optional[Path], as_json: bool) -> None:
    from .export.text import export_text_onnx

    if out is None and not spec.is_dir():
        raise EdgeslimError(f"give --out FILE.onnx to export {spec} (it is not a checkpoint folder to write into)")
    r = export_text_onnx(text_model[0], out or spec / "model.onnx", text_model[1])
    if as_json:
        return _print_json(r)
    console.print(f"wrote {r['onnx']} ({r['bytes']:,} bytes) and {r['tokenizer']}; parity on {r['samples']} "
                  f"sentences: max |diff| {r['max_abs_diff']:.2e}")


_REQUIRE_SIGNATURE_OPT = typer.Option(
    False, "--require-signature",
    help="refuse any model that is not a signed .eslim verified with --verify (also: EDGESLIM_REQUIRE_SIGNATURE=1)")


@app.command()
def run(model: Path, image: Optional[Path] = typer.Argument(None, help="image to classify (image models)"),
        text: Optional[str] = typer.Option(None, "--text", help="sentence to embed (text models)"),
        threads: Optional[int] = _THREADS_OPT,
        public_key: Optional[Path] = typer.Option(None, "--verify", help="ed25519 public key for .eslim files"),
        require_signature: bool = _REQUIRE_SIGNATURE_OPT,
        as_json: bool = typer.Option(False, "--json")) -> None:
    """Classify one image, or embed one sentence (--text), with an exported model (the on-device
    path: no torch)."""
    from .runtime import load_model

    if (image is None) == (text is None):
        raise EdgeslimError("give an image to classify or --text to embed (one of them)")
    if text is not None:
        from .runtime.text import load_text_model

        emb = load_text_model(model, threads=threads, public_key=public_key,
                              require_signature=require_signature or None).embed([text])[0]
        if as_json:
            return _print_json({"norm": float((emb ** 2).sum() ** 0.5), "dim": len(emb), "embedding": emb.tolist()})
        console.print(f"embedding: {len(emb)} values, norm {float((emb ** 2).sum() ** 0.5):.4f}, first "
                      + ", ".join(f"{v:+.4f}" for v in emb[:8]))
        return
    try:
        p = load_model(model, threads=threads, public_key=public_key,
                       require_signature=require_signature or None).classify_image(image)
    except ValueError as e:
        raise EdgeslimError(str(e)) from None
    if as_json:
        return _print_json({"class_index": p.class_index, "class_name": p.class_name, "probability": p.probability})
    console.print(f"{p.class_name} ({p.probability:.1%})")


@app.command()
def bench(models: List[Path] = typer.Argument(..., help=".onnx, .eslim, .xml, .tflite or .pte files (exports of one "
                                                       "model; ratios and agreement are to the first)"),
          batch: int = typer.Option(1, min=1), threads: Optional[int] = _THREADS_OPT,
          rounds: int = typer.Option(20, min=1), warmup: int = typer.Option(10, min=0),
          seq_len: int = typer.Option(128, min=2, help="text models: tokens per row (real word pieces)"),
          public_key: Optional[Path] = typer.Option(None, "--verify", help="ed25519 public key for .eslim files"),
          require_signature: bool = _REQUIRE_SIGNATURE_OPT,
          chart: Optional[Path] = typer.Option(None, help="write a PNG bar chart of the latencies here"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Latency p50/p90/p99, throughput, init time, memory, size and output agreement; models side by side."""
    from .report import rich_table
    from .runtime import benchmark, slower_than_baseline

    res = benchmark(models, batch=batch, threads=threads, rounds=rounds, warmup=warmup, public_key=public_key,
                    require_signature=require_signature or None,  # None: EDGESLIM_REQUIRE_SIGNATURE decides
                    seq_len=seq_len)
    if chart is not None:
        from .runtime.bench import plot_benchmark

        plot_benchmark(res, chart)
    if as_json:
        return _print_json(res)
    cols = ["model", "runtime", "file_bytes", "p50_ms", "p90_ms", "p99_ms", "throughput_per_s", "session_init_ms",
            "rss_increase_mb", "peak_rss_mb", "threads", "speedup", "size_ratio", "max_abs_diff", "top1_agreement"]
    console.print(rich_table(res, cols, title=f"batch {batch}; agreement with {res[0]['model']} on "
                                              f"{res[0]['agreement_samples']} generated inputs",
                             narrow=["model", "runtime", "p50_ms", "p99_ms", "speedup", "top1_agreement"]))
    for m in slower_than_baseline(res):
        err.print(f"[yellow]warning: {m} is not faster than {res[0]['model']}[/yellow]")
    if chart is not None:
        console.print(f"chart written to {chart}")


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo")), epochs: int = typer.Option(4, min=1),
         target_latency: float = typer.Option(0.7, min=0.05, max=1.0,
                                              help="fraction of the baseline's measured latency to prune to"),
         finetune_epochs: int = typer.Option(2, min=0, help="distilled fine-tune epochs after pruning"),
         calibration_samples: int = typer.Option(512, min=1, help="images that calibrate int8"),
         data_dir: Optional[Path] = None,
         threads: Optional[int] = _THREADS_OPT) -> None:
    """Train, prune, quantize, export and run seed-cnn on Fashion-MNIST; one comparison table."""
    from .pipeline.demo import run_demo
    from .report import rich_table

    r = run_demo(out, epochs=epochs, target_latency=target_latency, finetune_epochs=finetune_epochs,
                 calibration_samples=calibration_samples, data_dir=data_dir, threads=threads,
                 log=lambda s: console.print(f"[bold cyan]{s}[/bold cyan]"))
    console.print(rich_table(r["rows"], r["columns"], title="baseline vs compressed (ONNX Runtime)"))
    s = r["summary"]
    console.print(f"accuracy drop {s['accuracy_drop_points']:.2f} points, {s['size_reduction']:.1f}x smaller "
                  f"file; report: {r['report']}")
    for w in s["warnings"]:
        err.print(f"[yellow]warning: {w}[/yellow]")


# ---- prune commands (issue 3) ----
_CONFIG_OPT = typer.Option(None, "--config", help="YAML file with the method's config (the Python class's fields); "
                                                  "options given on the command line replace its values")


def _config_from(file: Optional[Path], options: dict, build, what: str):
    """One config, built once: ``--config FILE`` (a YAML mapping), then the options given on the
    command line (unset options are None; dotted keys such as ``finetune.epochs`` go into blocks),
    validated by ``build(data, source)``, which names a bad field."""
    from ._io import read_yaml_mapping
    from .errors import ConfigError

    data = read_yaml_mapping(file, f"{what} config", "the config's fields") if file else {}
    for key, value in options.items():
        if value is None:
            continue
        *blocks, leaf = key.split(".")
        node = data
        for block in blocks:
            node = node.setdefault(block, {})
            if not isinstance(node, dict):
                raise ConfigError(f"invalid {what} config {file}: {block} must be a mapping")
        node[leaf] = value
    return build(data, f"{what} config {file}" if file else f"{what} option")


@app.command("prune")
def prune_cmd(checkpoint: Path = typer.Argument(..., help=_MODEL_HELP), weights: Optional[Path] = _WEIGHTS_OPT,
              out: Path = typer.Option(..., help="checkpoint folder to write"),
              config_file: Optional[Path] = _CONFIG_OPT,
              method: Optional[str] = typer.Option(None, show_default="unstructured",
                                                   help="unstructured | structured | nm"),
              criterion: Optional[str] = typer.Option(None, show_default="lamp for unstructured, else magnitude",
                                                      help="magnitude | lamp | taylor | l1 | bn_scale"),
              sparsity: Optional[float] = typer.Option(
                  None, help="fraction of weights to zero, default 0.9 (structured: channel ratio)"),
              target_macs: Optional[float] = typer.Option(None, help="structured: fraction of MACs to keep"),
              target_latency: Optional[float] = typer.Option(
                  None, help="structured: fraction of the ONNX Runtime latency to keep (channel counts measured)"),
              latency_batch: Optional[List[int]] = typer.Option(
                  None, min=1, help="timing.batch: batch size the latency layout and speed check measure at; "
                                    "repeat for several (default: 1 and 64)"),
              layout: Optional[str] = typer.Option(
                  None, help="structured: latency (channel counts by measured ONNX Runtime latency; default for "
                             "targets) | uniform (one ratio for every layer)"),
              scope: Optional[str] = typer.Option(None, help="global | layer | sensitivity"),
              schedule: Optional[str] = typer.Option(
                  None, help="oneshot | gradual (cubic, Zhu & Gupta; default for unstructured with >= 2 "
                             "fine-tune epochs)"),
              pruning_steps: Optional[int] = typer.Option(None, show_default="10",
                                                          help="pruning steps of the gradual schedule"),
              finetune_epochs: Optional[int] = typer.Option(None, min=0, show_default="0", help="finetune.epochs"),
              lr: Optional[float] = typer.Option(None, show_default="0.002 unstructured, 0.004 structured, else 0.001",
                                                 help="finetune.lr"),
              finetune_augment: Optional[bool] = typer.Option(
                  None, "--finetune-augment/--no-finetune-augment",
                  help="finetune.augment: random flips and shifts while fine-tuning (default: as the model was "
                       "trained)"),
              distill: Optional[bool] = typer.Option(None, "--distill/--no-distill", show_default="distill",
                                                     help="finetune.distill: fine-tune by distillation from the "
                                                          "unpruned model"),
              n: Optional[int] = typer.Option(None, show_default="2", help="N of N:M"),
              m: Optional[int] = typer.Option(None, show_default="4", help="M of N:M"),
              layers: Optional[str] = typer.Option(None, help="comma-separated layer names to prune"),
              exclude: Optional[str] = typer.Option(None, help="comma-separated layer names to keep"),
              layer_sparsity: Optional[str] = typer.Option(
                  None, help="per-layer sparsity / structured channel ratio: NAME=FRACTION,..."),
              round_to: Optional[int] = typer.Option(None, help="structured: keep channel counts multiples of this"),
              dataset: Optional[str] = None, data_dir: Optional[Path] = None,
              as_json: bool = typer.Option(False, "--json")) -> None:
    """Prune a checkpoint (unstructured, structured channels or N:M), fine-tune, write a checkpoint."""
    from .prune import prune_checkpoint, prune_config
    from .prune.config import parse_layer_values
    from .report import rich_table

    def names(text: Optional[str]) -> Optional[list]:
        return [x.strip() for x in text.split(",") if x.strip()] if text else None

    # unset options stay unset, so the config's own defaults (which depend on the method) apply
    config = _config_from(config_file, {
        "method": method, "criterion": criterion, "target_macs": target_macs, "target_latency": target_latency,
        "timing.batch": latency_batch or None, "layout": layout, "scope": scope, "schedule": schedule,
        "sparsity": sparsity, "pruning_steps": pruning_steps, "finetune.epochs": finetune_epochs,
        "finetune.lr": lr, "finetune.augment": finetune_augment, "finetune.distill": distill, "n": n, "m": m,
        "layers": names(layers), "exclude": names(exclude), "layer_sparsity": parse_layer_values(layer_sparsity),
        "round_to": round_to}, lambda data, source: prune_config(data, source), "prune")
    r = prune_checkpoint(_model_source(checkpoint, weights), config, out, dataset=dataset, data_dir=data_dir,
                         progress=not as_json,
                         log=None if as_json else (lambda s: err.print(f"[cyan]{s}[/cyan]")))
    s = r.summary
    if as_json:
        return _print_json({k: v for k, v in s.items() if k not in ("finetune", "sensitivity")})
    rows = [{"stage": k, **{c: s[k].get(c) for c in ("accuracy", "params", "nonzero_params", "weight_sparsity", "macs")}}
            for k in ("before", "after")]
    console.print(rich_table(rows, title=f"prune {config.method} -> {out}"))
    for w in r.warnings:
        err.print(f"[yellow]warning: {w}[/yellow]")

def _quantize_text(text_model, out: Path, as_json: bool, **options) -> None:
    from pydantic import ValidationError

    from .errors import config_error
    from .quantize.text import quantize_text_cli

    try:
        s = quantize_text_cli(text_model, out, log=lambda m: err.print(f"[cyan]{m}[/cyan]"), **options)
    except ValidationError as e:
        raise config_error(e, "quantize option") from None
    if as_json:
        return _print_json(s)
    console.print(f"wrote {s['artifact']} ({s['artifact_bytes']:,} bytes, {s.get('size_ratio', 0):.0%} of float)")
    if "mean_cosine" in s:
        console.print(f"mean cosine to float {s['mean_cosine']:.4f} (min {s['min_cosine']:.4f}), retrieval "
                      f"agreement {s['retrieval_agreement']:.1%} on {s['sentences']} sentences")
    if "speed" in s:
        console.print(f"speed: {s['speed']['speedup']:.2f}x float at batch 1, seq {s['speed']['seq_len']}")


# ---- quantize commands (issue 4) ----
@app.command("quantize")
def quantize_cmd(checkpoint: Path = typer.Argument(..., help=_MODEL_HELP), weights: Optional[Path] = _WEIGHTS_OPT,
                 config_file: Optional[Path] = _CONFIG_OPT,
                 method: Optional[str] = typer.Option(None, show_default="static",
                                                      help="static | dynamic | qat | weight_sharing"),
                 calibration: Optional[str] = typer.Option(None, show_default="mse",
                                                           help="minmax | percentile | entropy | mse"),
                 samples: Optional[int] = typer.Option(None, show_default="256", help="calibration samples"),
                 per_channel: Optional[bool] = typer.Option(None, "--per-channel/--per-tensor",
                                                            show_default="per-channel"),
                 symmetric: Optional[bool] = typer.Option(None, "--symmetric/--no-symmetric",
                                                          show_default="no-symmetric",
                                                          help="int8 activations instead of uint8"),
                 equalize: Optional[bool] = typer.Option(None, "--equalize/--no-equalize", show_default="equalize",
                                                         help="cross-layer equalization"),
                 bias_correction: Optional[bool] = typer.Option(None, "--bias-correction/--no-bias-correction",
                                                                show_default="bias-correction",
                                                                help="empirical bias correction"),
                 reduce_range: Optional[str] = typer.Option(
                     None, show_default="auto", help="auto | true | false: 7-bit int8 weights, which x86 CPUs without "
                                                     "VNNI need (their int8 kernels saturate); auto: where this "
                                                     "machine has such a CPU; true when the target device has one"),
                 max_accuracy_drop: Optional[float] = typer.Option(None, help="points; keeps sensitive layers float"),
                 epochs: Optional[int] = typer.Option(None, show_default="2",
                                                      help="finetune.epochs: QAT / centroid fine-tuning epochs"),
                 bits_conv: Optional[int] = typer.Option(None, "--bits-conv", "--conv-bits", show_default="4",
                                                         help="conv_bits (weight sharing)"),
                 bits_linear: Optional[int] = typer.Option(None, "--bits-linear", "--linear-bits", show_default="5",
                                                           help="linear_bits (weight sharing)"),
                 threads: Optional[int] = _THREADS_OPT, data_dir: Optional[Path] = None,
                 calib_data: Optional[str] = typer.Option(
                     None, help="calibration data read with the model's preprocessing: a folder of images (labels.tsv /"
                                " labels.csv or class sub-folders: calibrate on one half, measure on the other), an "
                                "unlabeled image folder, .npy (default: the model's data set); text models: a .txt "
                                "file or folder of .txt (one sentence a line) or site-docs (the first --samples "
                                "calibrate, the rest, up to --eval-samples, measure fidelity)"),
                 eval_samples: int = typer.Option(1000, min=0, help="text models: sentences to compare on"),
                 keep_float: int = typer.Option(0, min=0, help="text models: most sensitive ops kept float"),
                 out: Path = typer.Option(..., help="folder for model.onnx and summary.json"),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Quantize a checkpoint: static int8 (QDQ), dynamic int8, QAT, or weight sharing. Text models
    (all-minilm-l6-v2, hf:PATH, a text checkpoint): dynamic (their default) or static int8 after
    ORT's transformer fusion (calibration: minmax unless percentile/entropy is given)."""
    from .models.text import resolve_text_model
    from .quantize import quantize_config
    from .quantize.api import quantize_checkpoint

    text_model = resolve_text_model(checkpoint)
    if text_model is not None:
        return _quantize_text(text_model, out, as_json, method=method, calibration=calibration, samples=samples,
                              per_channel=per_channel, reduce_range=reduce_range, keep_float=keep_float,
                              threads=threads, calib_data=calib_data, eval_samples=eval_samples)
    config = _config_from(config_file, {
        "method": method, "calibration": calibration, "samples": samples, "per_channel": per_channel,
        "symmetric": symmetric, "equalize": equalize, "bias_correction": bias_correction,
        "reduce_range": reduce_range, "max_accuracy_drop": max_accuracy_drop, "finetune.epochs": epochs,
        "conv_bits": bits_conv, "linear_bits": bits_linear, "timing.threads": threads}, quantize_config, "quantize")
    r = quantize_checkpoint(_model_source(checkpoint, weights), config, out, data_dir,
                            log=lambda s: err.print(f"[cyan]{s}[/cyan]"), calib_data=calib_data, progress=not as_json)
    s = r.summary
    if as_json:
        return _print_json({k: s.get(k) for k in ("artifact", "float_accuracy", "accuracy", "accuracy_drop_points",
                                                   "agreement", "size_ratio", "speed", "float_layers", "warnings")})
    console.print(f"wrote {r.artifact} ({s['artifact_bytes']:,} bytes, {s['size_ratio']:.0%} of float) and "
                  f"{Path(out) / 'summary.json'}")
    if "accuracy" in s:
        console.print(f"accuracy {s['accuracy']:.4f} (float {s['float_accuracy']:.4f}, drop "
                      f"{s['accuracy_drop_points']:.2f} points, agreement {s['agreement']:.4f})")
    if "speed" in s:
        console.print(f"speed: {s['speed']['speedup']:.2f}x float at batch {s['speed']['batch']}")
    for f in s.get("float_layers", []):
        console.print(f"float layer {f['layer']}: {f['reason']}")  # warnings were already logged


# ---- distill / artifact commands (issue 5) ----

@app.command("distill")
def distill_cmd(teacher: Path = typer.Option(..., help="teacher: " + _MODEL_HELP),
                weights: Optional[Path] = typer.Option(None, "--weights", "--teacher-weights",
                                                       help="safetensors state_dict loaded into the teacher"),
                config_file: Optional[Path] = _CONFIG_OPT,
                student: Optional[str] = typer.Option(
                    None, help="registered model built at --width (default: the teacher's), or a model source "
                               "trained as it is: " + _MODEL_HELP),
                width: float = typer.Option(0.25, min=0.01, max=1.0, help="student channel multiplier"),
                epochs: Optional[int] = typer.Option(None, min=0, show_default="10", help="finetune.epochs"),
                temperature: Optional[float] = typer.Option(None, show_default="4.0", help="finetune.temperature"),
                alpha: Optional[float] = typer.Option(None, show_default="0.9", help="finetune.alpha"),
                lr: Optional[float] = typer.Option(None, show_default="0.002", help="finetune.lr"),
                batch_size: Optional[int] = typer.Option(None, min=1, show_default="128", help="finetune.batch_size"),
                seed: Optional[int] = typer.Option(None, show_default="0"),
                hint: List[str] = typer.Option([], help="hint pair STUDENT_LAYER:TEACHER_LAYER (repeatable)"),
                unlabeled: Optional[bool] = typer.Option(None, "--unlabeled/--no-unlabeled", show_default="no-unlabeled",
                                                         help="train on teacher outputs only"),
                augmentation: Optional[str] = typer.Option(
                    None, show_default="shift_flip", help="finetune.augment: shift_flip | crop_flip | none"),
                dataset: Optional[str] = None, data_dir: Optional[Path] = None,
                out: Path = typer.Option(..., help="student checkpoint folder to write")) -> None:
    """Train a small student from a teacher checkpoint with knowledge distillation."""
    from .distill import distill_checkpoint, distill_config
    from .errors import ConfigError

    hints = [h.split(":", 1) for h in hint]
    if any(len(h) != 2 for h in hints):
        raise ConfigError(f"--hint takes STUDENT_LAYER:TEACHER_LAYER, got {hint}")
    augments = {"shift_flip": True, "crop_flip": "crop_flip", "none": False}
    if augmentation is not None and augmentation not in augments:
        raise ConfigError(f"--augmentation: use one of {', '.join(augments)}, got {augmentation!r}")
    config = _config_from(config_file, {
        "finetune.epochs": epochs, "finetune.temperature": temperature, "finetune.alpha": alpha, "finetune.lr": lr,
        "finetune.batch_size": batch_size, "seed": seed, "hint_layers": [tuple(h) for h in hints] or None,
        "unlabeled": unlabeled, "finetune.augment": augments.get(augmentation)}, distill_config, "distill")
    r = distill_checkpoint(_model_source(teacher, weights), student, width, config, out, dataset, data_dir)
    m = r.summary["metrics"]
    console.print(f"student test accuracy {m['accuracy']:.4f} (teacher {m['teacher_accuracy']:.4f}), "
                  f"{m['train_seconds']:.0f} s; checkpoint written to {out}")


@app.command("keygen")
def keygen_cmd(out: Path = typer.Option(..., help="private key file; the public key goes to OUT.pub"),
               overwrite: bool = False) -> None:
    """Create an ed25519 key pair for signing .eslim artifacts."""
    from .runtime.signing import generate_keypair

    priv, pub = generate_keypair(out, overwrite)
    console.print(f"private key {priv} (mode 0600, keep it secret); public key {pub} (ship it to devices)")


@app.command("pack")
def pack_cmd(checkpoint: Path, out: Optional[Path] = typer.Option(None, help="default: CHECKPOINT/model.eslim"),
             sign: Optional[Path] = typer.Option(None, "--sign", help="ed25519 private key (edgeslim keygen)"),
             entropy: str = typer.Option("best", help="best | huffman | zstd | none"),
             float16: bool = typer.Option(False, help="store float values as float16 (lossy)"),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Pack a checkpoint (or an exported .onnx file, e.g. a text model with its tokenizer) into a
    compressed, verifiable .eslim file (sparse + codebooks + entropy coding)."""
    from pydantic import ValidationError

    from .errors import config_error
    from .export.artifact import PackOptions, pack_checkpoint, pack_onnx
    from .report import rich_table

    try:
        options = PackOptions(entropy=entropy, float16=float16)
    except ValidationError as e:
        raise config_error(e, "pack option") from None
    r = (pack_onnx if checkpoint.suffix == ".onnx" else pack_checkpoint)(checkpoint, out, sign, options)
    if as_json:
        return _print_json(r)
    console.print(rich_table(r["tensors"], ["name", "shape", "encoding", "gap_bits", "coders", "bytes"],
                             title=r["path"], narrow=["name", "shape", "encoding", "bytes"]))
    console.print(f"wrote {r['path']}: {r['bytes']:,} bytes (graph {r['graph_bytes']:,}, manifest "
                  f"{r['manifest_bytes']:,}, tensors {r['tensor_bytes']:,}){', signed' if r['signed'] else ''}")


@app.command("verify")
def verify_cmd(artifact: Path, public_key: Optional[Path] = typer.Option(None, "--key", "--verify",
                                                                        help="ed25519 public key (PEM)"),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Check an .eslim file: every sha256, the signature (with --key), and that the model rebuilds."""
    from .runtime.artifact import verify_artifact

    r = verify_artifact(artifact, public_key)
    if as_json:
        return _print_json(r)
    sig = "signature verified" if r["signature_verified"] else ("signed, not checked (no --key)" if r["signed"]
                                                                 else "unsigned")
    console.print(f"OK {artifact}: {r['model']}, {r['file_bytes']:,} bytes, {r['parts']} parts, all sha256 match, "
                  f"{sig}")

# ---- pipeline / search commands (issue 5) ----

@app.command("recipes")
def recipes_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the built-in compression recipes (use with `edgeslim compress --recipe NAME`)."""
    from .pipeline import list_recipes

    rows = list_recipes()
    if as_json:
        return _print_json(rows)
    for r in rows:
        console.print(f"[bold]{r['name']}[/bold]: {r['description']}  [dim]({r['stages']}; budget "
                      f"{r['max_accuracy_drop']:g} points)[/dim]")


@app.command("compress")
def compress_cmd(checkpoint: Path = typer.Argument(..., help=_MODEL_HELP), weights: Optional[Path] = _WEIGHTS_OPT,
                 recipe: str = typer.Option(..., help="built-in recipe name or a YAML file"),
                 out: Path = typer.Option(..., help="output folder (stages/, state.json, report.md/json)"),
                 resume: bool = typer.Option(False, help="continue after the last completed stage"),
                 max_accuracy_drop: Optional[float] = typer.Option(
                     None, min=0.0, help="accuracy budget in points (default: the recipe's); stages that would "
                                         "spend more are weakened until they fit"),
                 time_budget: Optional[str] = typer.Option(
                     None, help="stop weakening stages after this long (e.g. 90s, 30m, 1.5h); the best in-budget "
                                "result so far is always OUT/model.onnx or OUT/model.eslim"),
                 adapt: bool = typer.Option(True, "--adapt/--no-adapt",
                                            help="weaken stages to meet the budget (--no-adapt: run as written)"),
                 data_dir: Optional[Path] = None, as_json: bool = typer.Option(False, "--json")) -> None:
    """Run a recipe's stages (prune, distill, share_weights, quantize, export) within an accuracy
    budget, with a checkpoint after each and a report of every stage's accuracy, size, MACs and latency."""
    import edgeslim
    from .pipeline.budget import parse_duration

    r = edgeslim.compress(_model_source(checkpoint, weights), recipe, out=out, resume=resume,
                          max_accuracy_drop=max_accuracy_drop,
                          time_budget=parse_duration(time_budget) if time_budget else None, adapt=adapt,
                          data_dir=data_dir, progress=not as_json, console=console).summary
    if as_json:
        _print_json(r)


@app.command("search")
def search_cmd(checkpoint: Optional[Path] = typer.Argument(None, help=_MODEL_HELP + " (not needed with "
                                                           "--report-only)"),
               weights: Optional[Path] = _WEIGHTS_OPT,
               out: Path = typer.Option(..., help="folder for study.db, trials/ and pareto.*"),
               max_accuracy_drop: Optional[float] = typer.Option(
                   None, min=0.0, help="budget in accuracy points [default: the --config file's, else 0.5]"),
               trials: Optional[int] = typer.Option(
                   None, min=1, help="total trials in the study (over all workers and runs) [default: the --config "
                                     "file's, else 40]"),
               storage: Optional[str] = typer.Option(None, help="Optuna storage URL (default sqlite:///OUT/study.db;"
                                                     " e.g. postgresql+psycopg2://user:pw@host/db to share)"),
               study_name: str = typer.Option("edgeslim-search"),
               workers: int = typer.Option(1, min=1, help="local worker processes"),
               config: Optional[Path] = typer.Option(None, help="YAML with search settings (SearchConfig); options "
                                                     "given on the command line replace its values"),
               max_steps: Optional[int] = typer.Option(None, min=1, help="training steps per stage in a trial"),
               train_samples: Optional[int] = typer.Option(None, min=1),
               eval_samples: Optional[int] = typer.Option(None, min=1),
               report_only: bool = typer.Option(False, "--report-only",
                                                help="run no trial: rank the study's finished trials under "
                                                     "--max-accuracy-drop and rewrite OUT/pareto.*"),
               data_dir: Optional[Path] = None, as_json: bool = typer.Option(False, "--json")) -> None:
    """Accuracy-aware search (Optuna, multi-objective: size, latency, accuracy); Pareto table + PNG."""
    import edgeslim
    from .errors import ConfigError
    from .pipeline import rerank
    from .pipeline.autotune import NONE_WITHIN, load_search_config
    from .report import rich_table
    from .report.pipeline import PARETO_COLUMNS, PARETO_NARROW

    if report_only:
        budget = max_accuracy_drop
        if budget is None and config:
            budget = load_search_config(config).max_accuracy_drop
        r = rerank(out, budget, storage=storage, study_name=study_name)
    else:
        if checkpoint is None:
            raise ConfigError("search needs a CHECKPOINT folder to compress (or --report-only to re-rank the study "
                              "in --out)")
        # built once: the YAML file, then only the options given here (unset options are None)
        cfg = load_search_config(config, max_accuracy_drop=max_accuracy_drop, trials=trials, max_steps=max_steps,
                                 train_samples=train_samples, eval_samples=eval_samples)
        r = edgeslim.search(_model_source(checkpoint, weights), cfg, out=out, storage=storage, study_name=study_name,
                            workers=workers, data_dir=data_dir, progress=not as_json).summary
    if as_json:
        return _print_json({k: v for k, v in r.items() if k != "all_trials"})
    if r["pareto"]:
        title = f"Pareto front ({r['feasible']} of {r['complete']} trials within {r['max_accuracy_drop']:g} points)"
        console.print(rich_table(r["pareto"], PARETO_COLUMNS, title=title, narrow=PARETO_NARROW))
    elif r["closest"]:
        console.print(rich_table(r["closest"], PARETO_COLUMNS, narrow=PARETO_NARROW,
                                 title=f"{NONE_WITHIN} (all {r['complete']} trials lose more than "
                                       f"{r['max_accuracy_drop']:g} points)"))
    console.print(r["verdict"])
    console.print(f"report: {r['files']['md']}, plot: {r['files']['png']}")

# ---- edge / split / serve commands (issue 6) ----
def _cpu_list(text: Optional[str]) -> Optional[List[int]]:
    from .errors import ConfigError

    if not text:
        return None
    try:
        cpus = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise ConfigError(f"--cpus must be a comma-separated list of CPU numbers, not {text!r}") from None
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    missing = [c for c in cpus if c not in allowed]
    if missing or not cpus:
        raise ConfigError(f"--cpus {text}: CPU(s) {', '.join(map(str, missing)) or '(none)'} not available to this "
                          f"process (use some of {', '.join(map(str, allowed))})")
    return cpus


_PROFILES_OPT = typer.Option([], "--profiles", help="extra device/network profile YAML files")
_CPUS_OPT = typer.Option(None, "--cpus", help="pin to these CPUs, e.g. 0 (emulates a small device)")


@app.command("profiles")
def profiles_cmd(profiles: List[Path] = _PROFILES_OPT, as_json: bool = typer.Option(False, "--json")) -> None:
    """List the device and network profiles (built-in catalog plus --profiles files)."""
    from .edge import load_profiles
    from .report import rich_table

    cat = load_profiles(profiles)
    devices = [d.model_dump() for d in cat.devices.values()]
    networks = [n.model_dump() for n in cat.networks.values()]
    if as_json:
        return _print_json({"devices": devices, "networks": networks})
    console.print(rich_table(devices, ["name", "gflops_fp32", "int8_speedup", "memory_mb", "power_active_w",
                                       "power_idle_w", "description"], title="devices",
                             narrow=["name", "gflops_fp32", "memory_mb", "description"]))
    console.print(rich_table(networks, ["name", "uplink_mbps", "downlink_mbps", "rtt_ms", "radio_power_w",
                                        "description"], title="networks",
                             narrow=["name", "uplink_mbps", "downlink_mbps", "rtt_ms", "description"]))


@app.command("calibrate")
def calibrate_cmd(threads: int = typer.Option(1, min=1), cpus: Optional[str] = _CPUS_OPT,
                  as_json: bool = typer.Option(False, "--json")) -> None:
    """Measure this host's effective GFLOP/s and int8 speed-up (a conv microbenchmark, <1 s)."""
    from .edge import calibrate_host

    cal = calibrate_host(threads, _cpu_list(cpus))
    if as_json:
        return _print_json(cal.to_dict())
    console.print(f"this host ({threads} thread(s)): {cal.gflops_fp32:.1f} GFLOP/s fp32, "
                  f"int8 speed-up {cal.int8_speedup:.2f}x")


@app.command("layers")
def layers_cmd(model: Path, threads: int = typer.Option(1, min=1), cpus: Optional[str] = _CPUS_OPT,
               runs: int = typer.Option(20, min=1), as_json: bool = typer.Option(False, "--json")) -> None:
    """Per-layer latency (ONNX Runtime profiler), output bytes, MACs and the candidate cut points."""
    from .edge import profile_layers
    from .report import rich_table

    prof = profile_layers(model, threads=threads, cpus=_cpu_list(cpus), runs=runs)
    if as_json:
        return _print_json({"run_ms": prof.run_ms, "overhead_ms": prof.overhead_ms, "nodes": prof.node_rows(),
                            "cut_points": prof.cut_rows()})
    console.print(rich_table(prof.node_rows(), title=f"{model.name}: per-node latency (run {prof.run_ms:.3f} ms)",
                             narrow=["name", "op", "ms", "macs"]))
    console.print(rich_table(prof.cut_rows(), title="cut points", narrow=["cut", "bytes", "head_ms", "tail_ms"]))


@app.command("plan")
def plan_cmd(model: Path, device: str = typer.Option("raspberry-pi-4"), network: str = typer.Option("4g"),
             server: str = typer.Option("cloud-server"), objective: str = typer.Option("latency",
                                                                                     help="latency | energy"),
             max_uplink_bytes: Optional[int] = typer.Option(None), keep_raw_data_on_device: bool = False,
             quantize_cut: bool = typer.Option(False, help="send the cut tensor as uint8 + scale/zero point"),
             profiles: List[Path] = _PROFILES_OPT, plot: Optional[Path] = typer.Option(
                 None, help="PNG plot (default: MODEL.plan.png)"),
             threads: int = typer.Option(1, min=1), cpus: Optional[str] = _CPUS_OPT,
             as_json: bool = typer.Option(False, "--json")) -> None:
    """On-device, full offload or split? Predicted latency, device energy and bytes for each placement."""
    from .edge import plan_config, plan_model
    from .edge.planner import TABLE_COLUMNS
    from .report import rich_table

    cfg = plan_config(objective=objective, max_uplink_bytes=max_uplink_bytes,
                      keep_raw_data_on_device=keep_raw_data_on_device, quantize_cut=quantize_cut)
    from .runtime.onnx_file import model_file

    plot = plot or model_file(model, (".onnx",)).with_suffix(".plan.png")  # a folder's plot goes inside it
    result, _, cal = plan_model(model, device, network, server, cfg, profiles, threads, _cpu_list(cpus), plot)
    if as_json:
        return _print_json(result.to_dict() | {"host": cal.to_dict(), "plot": str(plot)})
    console.print(rich_table(result.rows(), TABLE_COLUMNS, title=f"{model.name} on {device} via {network} "
                             f"to {server} (host {cal.gflops_fp32:.0f} GFLOP/s)",
                             narrow=["option", "latency_ms", "energy_mj"]))
    b = result.best
    console.print(f"best ({cfg.objective}): [bold]{b.label}[/bold]: {b.latency_ms:.1f} ms, "
                  f"{b.energy_mj:.1f} mJ on the device, {b.uplink_bytes:,} bytes sent; plot: {plot}")


@app.command("split")
def split_cmd(model: Path, at: str = typer.Option(..., help="cut tensor (see `edgeslim layers`)"),
              out: Path = typer.Option(..., help="folder for head.onnx and tail.onnx")) -> None:
    """Split a model at a cut tensor into head.onnx (device) and tail.onnx (server)."""
    from .edge import split_model

    split_model(model, at, out)
    console.print(f"wrote {out / 'head.onnx'} and {out / 'tail.onnx'} (cut at {at})")


_HOST_OPT = typer.Option("127.0.0.1", help="address to listen on (beyond loopback needs a token)")
_PORT_OPT = typer.Option(8000, help="TCP port, 1-65535")
_TOKEN_FILE_OPT = typer.Option(None, "--token-file", help="file holding the bearer token (else $EDGESLIM_TOKEN)")
_TLS_CERT_OPT = typer.Option(None, "--tls-cert", help="TLS certificate (PEM); with --tls-key")
_TLS_KEY_OPT = typer.Option(None, "--tls-key", help="TLS private key (PEM); with --tls-cert")
_NO_AUTH_OPT = typer.Option(False, "--insecure-no-auth", help="allow a non-loopback --host without a token")
_MAX_BODY_OPT = typer.Option(None, "--max-body-bytes", help="largest request body (default: sized from the "
                                                            "model input, 4-64 MiB)")
_MAX_CONC_OPT = typer.Option(None, "--max-concurrency", help="requests served at once, more get 429 (default 32)")
_TIMEOUT_OPT = typer.Option(None, "--request-timeout", help="seconds a request body may take, then 408 (default 30)")
_NONFINITE_OPT = typer.Option(False, "--allow-nonfinite", help="accept NaN/Inf inputs (default: 422)")
_MAX_REQ_OPT = typer.Option(None, "--max-requests", help="stop after N requests")


def _serve(model: Path, host: str, port: int, token_file: Optional[Path], tls_cert: Optional[Path],
           tls_key: Optional[Path], insecure_no_auth: bool, threads: int, cpus: Optional[str],
           max_requests: Optional[int], public_key: Optional[Path] = None, **limits) -> None:
    """What serve and serve-tail share: settings checked by the library, then the blocking server."""
    from .serve.auth import load_token
    from .serve.config import BindSettings, ServeSettings, make_settings
    from .serve.server import serve

    settings = make_settings(ServeSettings, **{k: v for k, v in limits.items() if v is not None})
    bind = make_settings(BindSettings, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key,
                         insecure_no_auth=insecure_no_auth)
    serve(model, settings, bind, token=load_token(token_file), threads=threads, cpus=_cpu_list(cpus),
          public_key=public_key, max_requests=max_requests, log=lambda line: err.print(line, highlight=False))


@app.command("serve-tail")
def serve_tail_cmd(model: Path, host: str = _HOST_OPT, port: int = _PORT_OPT,
                   token_file: Optional[Path] = _TOKEN_FILE_OPT, tls_cert: Optional[Path] = _TLS_CERT_OPT,
                   tls_key: Optional[Path] = _TLS_KEY_OPT, insecure_no_auth: bool = _NO_AUTH_OPT,
                   max_body_bytes: Optional[int] = _MAX_BODY_OPT, max_concurrency: Optional[int] = _MAX_CONC_OPT,
                   request_timeout: Optional[float] = _TIMEOUT_OPT, allow_nonfinite: bool = _NONFINITE_OPT,
                   threads: int = typer.Option(1, min=1), cpus: Optional[str] = _CPUS_OPT,
                   max_requests: Optional[int] = _MAX_REQ_OPT) -> None:
    """Serve a tail model (or any ONNX model) over HTTP: POST /v1/infer with a tensor message."""
    _serve(model, host, port, token_file, tls_cert, tls_key, insecure_no_auth, threads, cpus, max_requests,
           max_body_bytes=max_body_bytes, max_concurrency=max_concurrency, request_timeout=request_timeout,
           allow_nonfinite=allow_nonfinite)


@app.command("serve")
def serve_cmd(model: Path, host: str = _HOST_OPT, port: int = _PORT_OPT,
              max_batch: int = typer.Option(8, help="rows run as one ONNX Runtime batch (1: no batching)"),
              max_wait_ms: float = typer.Option(2.0, help="how long a batch waits to fill up"),
              token_file: Optional[Path] = _TOKEN_FILE_OPT, tls_cert: Optional[Path] = _TLS_CERT_OPT,
              tls_key: Optional[Path] = _TLS_KEY_OPT, insecure_no_auth: bool = _NO_AUTH_OPT,
              max_body_bytes: Optional[int] = _MAX_BODY_OPT, max_concurrency: Optional[int] = _MAX_CONC_OPT,
              request_timeout: Optional[float] = _TIMEOUT_OPT, allow_nonfinite: bool = _NONFINITE_OPT,
              public_key: Optional[Path] = typer.Option(None, "--verify", help="ed25519 public key for .eslim files"),
              threads: int = typer.Option(1, min=1), cpus: Optional[str] = _CPUS_OPT,
              max_requests: Optional[int] = _MAX_REQ_OPT) -> None:
    """Serve a whole model (.onnx or .eslim) with dynamic batching: POST an image to /v1/classify
    (class name and probabilities) or a tensor message to /v1/infer."""
    _serve(model, host, port, token_file, tls_cert, tls_key, insecure_no_auth, threads, cpus, max_requests,
           public_key, max_batch=max_batch, max_wait_ms=max_wait_ms, max_body_bytes=max_body_bytes,
           max_concurrency=max_concurrency, request_timeout=request_timeout, allow_nonfinite=allow_nonfinite)


@app.command("split-infer")
def split_infer_cmd(url: str, head: Optional[Path] = typer.Option(None, help="head model (none: full offload)"),
                    image: Optional[Path] = typer.Option(None, help="image file (default: random input)"),
                    network: Optional[str] = typer.Option(None, help="emulate this network profile (loopback)"),
                    quantize_cut: bool = False, profiles: List[Path] = _PROFILES_OPT,
                    token_file: Optional[Path] = _TOKEN_FILE_OPT,
                    ca_cert: Optional[Path] = typer.Option(None, "--ca-cert", help="trust this certificate "
                                                                                   "(a self-signed server)"),
                    threads: int = typer.Option(1, min=1), cpus: Optional[str] = _CPUS_OPT,
                    repeat: int = typer.Option(1, min=1), as_json: bool = typer.Option(False, "--json")) -> None:
    """The device side: run the head, send the cut tensor to a tail server, print the class."""
    import numpy as np

    from .runtime.runner import top_class
    from .serve.auth import load_token
    from .serve.client import SplitClient
    from .serve.netem import Link

    link = None
    if network:
        from .edge import load_profiles

        link = Link.of(load_profiles(profiles).network(network))
    with SplitClient(url, head, threads=threads, cpus=_cpu_list(cpus), link=link, quantize=quantize_cut,
                     token=load_token(token_file), verify=ca_cert or True) as client:
        x = client.load_image(image) if image else np.random.default_rng(0).standard_normal(
            client.input_shape()).astype(np.float32)
        results = [client.infer(x) for _ in range(repeat)]
        class_names = client.metadata.get("class_names")
    r = results[-1]
    p = top_class(r.output.reshape(len(r.output), -1)[0], class_names)
    summary = {"class_index": p.class_index, "class_name": p.class_name, "probability": p.probability,
               "total_ms": [round(s.total_ms, 3) for s in results], "head_ms": r.head_ms,
               "server_ms": r.server_ms, "uplink_bytes": r.uplink_bytes, "downlink_bytes": r.downlink_bytes}
    if as_json:
        return _print_json(summary)
    console.print(f"{p.class_name} ({p.probability:.1%})")
    parts = ([f"head {r.head_ms:.2f} ms"] if head else []) + (
        [f"server {r.server_ms:.2f} ms"] if r.server_ms is not None else [])
    console.print(f"[dim]{r.total_ms:.2f} ms end to end ({', '.join(parts) or 'full offload'}); "
                  f"{r.uplink_bytes:,} bytes up, {r.downlink_bytes:,} down[/dim]", highlight=False)



# ---- the error boundary: one line per failure, the traceback only with --debug ----
_DEBUG = {"on": False}




EXIT_BAD_INPUT = 2  # bad input or environment: an option, a file, the disk (the message says what to do)
EXIT_INTERNAL = 1  # an error edgeslim did not expect: a bug to report (with the --debug traceback)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C

_OS_HINTS = {errno.ENOSPC: "free some disk space or write somewhere else",
             errno.EDQUOT: "free some disk space or write somewhere else",
             errno.EACCES: "check the permissions or choose another path",
             errno.EPERM: "check the permissions or choose another path",
             errno.EROFS: "the file system is read-only: write somewhere else",
             errno.ENOENT: "check the path", errno.EISDIR: "give a file, not a folder",
             errno.ENOTDIR: "a part of the path is a file, not a folder",
             errno.EEXIST: "a file of that name is in the way: choose another path",
             errno.EFBIG: "the file is too large for this file system or the process's limit"}


def _os_error_line(e: OSError) -> str:
    code = e.errno if e.errno is not None else (errno.ENOENT if isinstance(e, FileNotFoundError) else None)
    hint = _OS_HINTS.get(code, "check the path and the disk")
    what = e.strerror or str(e)
    name = e.filename if e.filename is not None else None
    if name is None:
        return f"{what} ({hint})"
    verb = "cannot write" if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS) else "cannot use"
    return f"{verb} {name}: {what} ({hint})"


def _click_exceptions():
    """The exceptions module of the click that Typer runs on (recent Typer vendors its own)."""
    return sys.modules[typer.BadParameter.__module__]


def error_line(e: BaseException) -> tuple[str, int]:
    """The one line (without 'error: ') and the exit code the CLI reports for ``e``."""
    import yaml
    from pydantic import ValidationError

    from .errors import validation_message

    if isinstance(e, _click_exceptions().ClickException):
        cmd = e.ctx.command_path if getattr(e, "ctx", None) is not None else "edgeslim"
        return f"{e.format_message()} (see '{cmd} --help')", e.exit_code
    if isinstance(e, EdgeslimError):
        return str(e), EXIT_BAD_INPUT
    if isinstance(e, ValidationError):
        return validation_message(e, f"{e.title} value") + " (fix that option or field)", EXIT_BAD_INPUT
    if isinstance(e, OSError):
        return _os_error_line(e), EXIT_BAD_INPUT
    if isinstance(e, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({e}); save it as UTF-8", EXIT_BAD_INPUT
    if isinstance(e, yaml.YAMLError):
        return f"invalid YAML: {e}", EXIT_BAD_INPUT
    io_error = re.search(r"\(os error (\d+)\)", str(e))  # Rust libraries (safetensors) wrap OSError
    if io_error:
        code = int(io_error.group(1))
        return f"{os.strerror(code)} while writing or reading a file ({type(e).__name__}) " \
               f"({_OS_HINTS.get(code, 'check the path and the disk')})", EXIT_BAD_INPUT
    if isinstance(e, MemoryError):
        return "out of memory (use a smaller input, batch or model)", EXIT_BAD_INPUT
    return f"unexpected {type(e).__name__}: {e} (run with --debug for the traceback)", EXIT_INTERNAL


def _report(message: str) -> None:
    # one physical line whatever the message holds: no wrapping, no rich markup of '[...]'
    sys.stderr.write("error: " + " ".join(message.split()) + "\n")
    sys.stderr.flush()


def main(argv: Optional[List[str]] = None) -> None:
    """The ``edgeslim`` entry point: exit 0 on success; 2 with one ``error: ...`` line for bad
    input, a missing or unwritable file or a full disk; 130 on Ctrl-C; 1 with one line naming
    the exception for anything unexpected. ``--debug`` shows the traceback instead."""
    click = _click_exceptions()
    _DEBUG["on"] = "--debug" in (argv if argv is not None else sys.argv[1:])  # also for errors before the callback
    try:
        rv = typer.main.get_command(app).main(args=argv, prog_name="edgeslim", standalone_mode=False)
    except click.NoArgsIsHelpError as e:
        e.show()
        sys.exit(EXIT_BAD_INPUT)
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C outside a command, or EOF at a prompt
        _report("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as e:  # noqa: BLE001 - this is the boundary
        if _DEBUG["on"]:
            raise
        line, code = error_line(e)
        _report(line)
        sys.exit(code)
    if rv == EXIT_INTERRUPTED:  # typer turns KeyboardInterrupt into Exit(130), returned in this mode
        _report("interrupted")
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
