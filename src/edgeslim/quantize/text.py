"""Int8 sentence encoders: ONNX Runtime's transformer graph optimiser, then dynamic or static int8.

The float ONNX graph first goes through ``onnxruntime.transformers.optimizer`` (model type
``bert``): attention becomes one ``Attention`` op, residual + LayerNorm ``SkipLayerNormalization``,
bias + GELU ``BiasGelu``, embeddings ``EmbedLayerNormalization``. The quantizer then sees a
few large ops instead of hundreds of small ones (``QAttention``, ``MatMulInteger``), which is
where int8 pays off on a CPU. The fused graph is checked against the unfused one before it is
used (a fusion that changes the outputs is dropped, with a warning).

- ``dynamic``: int8 weights, activations quantized on the fly per batch (no calibration).
- ``static``: int8 weights and activation ranges calibrated on text (QDQ format).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import onnx
from pydantic import BaseModel, ConfigDict, Field

from .._io import write_json
from ..errors import ConfigError
from ..evaluate.text import embedding_fidelity
from ..export.onnx_export import save_onnx
from ..runtime.runner import OnnxRunner
from ..runtime.text import TextEmbedder, text_embedder
from .kernels import ReduceRange, resolve_reduce_range, weight_range_note

FUSION_TOLERANCE = 1e-3  # max |diff| of unit-norm embeddings: fusion is exact up to float rounding


class TextQuantizeConfig(BaseModel):
    """How to quantize a text model. ``keep_float``: that many of the MatMul/Attention ops whose
    quantization alone moves the embeddings most stay float (0: quantize all)."""
    model_config = ConfigDict(extra="forbid")

    method: Literal["dynamic", "static"] = "dynamic"
    fuse: bool = True
    per_channel: bool = True
    reduce_range: ReduceRange = "auto"  # 7-bit weights where the int8 kernels saturate (kernels.py)
    calibration: Literal["minmax", "percentile", "entropy"] = "minmax"
    samples: int = Field(256, ge=8)  # calibration sentences (static) / sensitivity sentences
    keep_float: int = Field(0, ge=0)
    exclude: list[str] = Field(default_factory=list)  # ONNX node names to keep float
    benchmark: bool = True
    seq_len: int = Field(128, ge=4)  # tokens per row when timing
    threads: int | None = Field(None, ge=1)


def encoder_shape(model) -> tuple[int, int]:
    """(heads, hidden size) for ORT's attention fusion; heads 0 when layers differ (pruned unevenly),
    which lets the optimiser skip attention fusion rather than fuse it wrongly."""
    cfg = model.config
    head = cfg.hidden_size // cfg.num_attention_heads
    heads = {layer.attention.self.query.out_features // head for layer in model.encoder.encoder.layer}
    return (heads.pop() if len(heads) == 1 else 0), int(cfg.hidden_size)


def _copy_metadata(src: onnx.ModelProto, dst_path: Path) -> None:
    """The quantizer and optimiser may drop metadata_props: put ours (metadata, tokenizer) back."""
    dst = onnx.load(str(dst_path))
    del dst.metadata_props[:]
    dst.metadata_props.extend(src.metadata_props)
    save_onnx(dst, dst_path)


def fuse_transformer(float_onnx: str | Path, out: str | Path, num_heads: int, hidden_size: int,
                     check_feeds: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Run ORT's BERT optimiser; returns the fused-op counts and whether the fused graph was kept
    (its embeddings must match the input graph's on ``check_feeds``)."""
    from onnxruntime.transformers import optimizer

    fused = optimizer.optimize_model(str(float_onnx), model_type="bert", num_heads=num_heads,
                                     hidden_size=hidden_size)
    fused.save_model_to_file(str(out))
    _copy_metadata(onnx.load(str(float_onnx)), Path(out))
    stats = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
    diff = 0.0
    if check_feeds is not None:
        ref = OnnxRunner(float_onnx).session.run(None, check_feeds)[0]
        diff = float(np.abs(OnnxRunner(out).session.run(None, check_feeds)[0] - ref).max())
    return {"fused_ops": stats, "max_abs_diff": diff, "kept": diff <= FUSION_TOLERANCE}


class FeedsReader:
    """onnxruntime CalibrationDataReader over tokenized batches (several int64 inputs)."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self.batches, self.i = batches, 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return self.batches[self.i - 1]

    def rewind(self):
        self.i = 0


def calibration_batches(embedder: TextEmbedder, texts: Sequence[str], batch_size: int = 16) -> list[dict]:
    """Tokenized batches, each padded to one fixed length (the calibrators stack activations
    across batches, so their shapes must agree)."""
    length = max(len(e.ids) for e in embedder.tokenizer.encode_batch(list(texts)))
    embedder.tokenizer.enable_padding(length=length)
    try:
        return [embedder.encode(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
    finally:
        embedder.tokenizer.enable_padding()


def quantize_text_onnx(src: str | Path, out: str | Path, method: str, per_channel: bool = True,
                       calib: list[dict[str, np.ndarray]] | None = None, calibration: str = "minmax",
                       exclude: Sequence[str] = (), only: Sequence[str] | None = None,
                       reduce_range: bool = False) -> Path:
    """Int8 copy of ``src`` (dynamic, or static QDQ calibrated on ``calib`` batches); metadata kept."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    from onnxruntime.quantization.shape_inference import quant_pre_process

    # ONNX's shape inference does not know com.microsoft ops (Attention, SkipLayerNormalization),
    # and the quantizer skips tensors of unknown type: ORT's symbolic shape inference does know them.
    inferred = Path(out).with_name(Path(out).stem + ".shapes.onnx")
    quant_pre_process(str(src), str(inferred), skip_optimization=True, skip_onnx_shape=True, auto_merge=True)
    src_meta, src = onnx.load(str(src)), inferred
    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    common = dict(per_channel=per_channel, reduce_range=reduce_range, nodes_to_exclude=list(exclude),
                  extra_options=extra, nodes_to_quantize=list(only) if only is not None else None)
    if method == "dynamic":
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, **common)
    else:
        if not calib:
            raise ConfigError("static int8 needs calibration text (--calib-data): none was given")
        methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                   "entropy": CalibrationMethod.Entropy}
        quantize_static(str(src), str(out), FeedsReader(calib), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[calibration], **common)
    inferred.unlink()
    _copy_metadata(src_meta, Path(out))
    return Path(out)


def quantizable_nodes(path: str | Path) -> list[str]:
    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node
            if n.op_type in ("MatMul", "Attention", "Gemm")]


def most_sensitive_nodes(src: Path, embedder: TextEmbedder, texts: Sequence[str], config: TextQuantizeConfig,
                         calib: list[dict] | None, tmp: Path, reduce_range: bool) -> list[dict[str, Any]]:
    """Every quantizable node's cosine loss when it alone is int8, worst first."""
    ref = embedder.embed(texts)
    losses = []
    for name in quantizable_nodes(src):
        one = quantize_text_onnx(src, tmp / "one.onnx", config.method, config.per_channel, calib,
                                 config.calibration, only=[name], reduce_range=reduce_range)
        got = text_embedder(OnnxRunner(one), one)
        losses.append({"node": name, "cosine_loss": 1 - embedding_fidelity(ref, got.embed(texts))["mean_cosine"]})
    return sorted(losses, key=lambda d: -d["cosine_loss"])


def quantize_text_file(float_onnx: str | Path, out: str | Path, config: TextQuantizeConfig,
                       calib_texts: Sequence[str] = (), num_heads: int = 0, hidden_size: int = 0,
                       log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Float text ONNX -> (fused ->) int8 ONNX at ``out``; returns what was done."""
    float_onnx, out = Path(float_onnx), Path(out)
    embedder = text_embedder(OnnxRunner(float_onnx), float_onnx)
    texts = list(calib_texts)[:config.samples]
    reduce_range = resolve_reduce_range(config.reduce_range)
    report: dict[str, Any] = {"method": config.method, "per_channel": config.per_channel,
                              "weight_range": weight_range_note(reduce_range)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = float_onnx
        if config.fuse:
            log("fusing attention / LayerNorm / GELU (onnxruntime.transformers optimizer, bert)")
            check = embedder.encode(texts[:8] or ["A sentence to check the fused graph."])
            fusion = fuse_transformer(float_onnx, tmp / "fused.onnx", num_heads, hidden_size, check)
            report["fusion"] = fusion
            if fusion["kept"]:
                src = tmp / "fused.onnx"
            else:
                report.setdefault("warnings", []).append(
                    f"the fused graph differs from the float one by {fusion['max_abs_diff']:.2e}; quantized unfused")
        calib = calibration_batches(embedder, texts) if config.method == "static" and texts else None
        exclude = list(config.exclude)
        if config.keep_float:
            if not texts:
                raise ConfigError("keep_float needs text (--calib-data) to measure each layer's sensitivity")
            log(f"measuring the sensitivity of each quantizable op on {min(len(texts), 64)} sentences")
            fused_embedder = text_embedder(OnnxRunner(src), src)
            ranked = most_sensitive_nodes(src, fused_embedder, texts[:64], config, calib, tmp, reduce_range)
            exclude += [r["node"] for r in ranked[:config.keep_float]]
            report["sensitivity"] = ranked
        report["float_nodes"] = exclude
        log(f"{config.method} int8" + (f" (keeping {len(exclude)} ops float)" if exclude else ""))
        quantize_text_onnx(src, out, config.method, config.per_channel, calib, config.calibration, exclude,
                           reduce_range=reduce_range)
    return report


def compare_text_models(float_onnx: str | Path, quant_onnx: str | Path, eval_texts: Sequence[str],
                        config: TextQuantizeConfig) -> dict[str, Any]:
    """Embedding fidelity on ``eval_texts`` and, if asked, latency side by side at batch 1."""
    from ..runtime.bench import benchmark

    float_embedder = text_embedder(OnnxRunner(float_onnx, config.threads), float_onnx)
    ref = float_embedder.embed(eval_texts)
    got = text_embedder(OnnxRunner(quant_onnx, config.threads), quant_onnx).embed(eval_texts)
    summary: dict[str, Any] = embedding_fidelity(ref, got)
    if config.benchmark:
        seq_len = min(config.seq_len, float_embedder.max_positions)
        res = benchmark([float_onnx, quant_onnx], batch=1, threads=config.threads, seq_len=seq_len,
                        require_signature=False)
        summary["speed"] = {"batch": 1, "seq_len": seq_len, "float_p50_ms": res[0]["p50_ms"],
                            "int8_p50_ms": res[1]["p50_ms"], "speedup": res[1]["speedup"]}
    summary["size_ratio"] = Path(quant_onnx).stat().st_size / Path(float_onnx).stat().st_size
    return summary


def quantize_text_model(model, tokenizer: str | Path, out_dir: str | Path, config: TextQuantizeConfig,
                        calib_texts: Sequence[str] = (), eval_texts: Sequence[str] = (),
                        log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """``SentenceEncoder`` -> ``out_dir``/float.onnx, model.onnx (int8), tokenizer.json, summary.json."""
    from ..export.text import export_text_onnx

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log("exporting the float model to ONNX")
    exported = export_text_onnx(model, out_dir / "float.onnx", tokenizer)
    heads, hidden = encoder_shape(model)
    summary = {"artifact": str(out_dir / "model.onnx"), "float_onnx": exported["onnx"],
               "export_max_abs_diff": exported["max_abs_diff"], "config": config.model_dump()}
    summary.update(quantize_text_file(out_dir / "float.onnx", out_dir / "model.onnx", config, calib_texts,
                                      heads, hidden, log))
    if len(eval_texts) >= 2:
        log(f"comparing with the float model on {len(eval_texts)} sentences")
        summary.update(compare_text_models(out_dir / "float.onnx", out_dir / "model.onnx", eval_texts, config))
    summary["artifact_bytes"] = (out_dir / "model.onnx").stat().st_size
    write_json(out_dir / "summary.json", summary)
    return summary


def quantize_text_cli(text_model: tuple, out: str | Path, calib_data: str | None, eval_samples: int,
                      log: Callable[[str], None] = lambda s: None, **options: Any) -> dict[str, Any]:
    """``edgeslim quantize TEXT-MODEL``: the first ``samples`` lines of ``calib_data`` calibrate,
    the next ``eval_samples`` measure fidelity and retrieval agreement against the float model.
    ``options``: TextQuantizeConfig fields, None for "not given". ``mse`` (the image default) has
    no ONNX Runtime counterpart, so it means minmax here."""
    from ..data.text import read_text_samples

    given = {k: v for k, v in options.items() if v is not None}
    if given.get("calibration") == "mse":
        given["calibration"] = "minmax"
    config = TextQuantizeConfig(**given)
    samples, method = config.samples, config.method
    texts = read_text_samples(calib_data, limit=samples + eval_samples) if calib_data else []
    if method == "static" and not texts:
        raise ConfigError("static int8 of a text model needs --calib-data (a .txt file, a folder of .txt, or "
                          "site-docs)")
    calib, evaluation = texts[:samples], texts[samples:]
    if len(evaluation) < 2:
        evaluation = texts  # too little text to hold some out: compare on the calibration text itself
    model, tokenizer = text_model
    return quantize_text_model(model, tokenizer, out, config, calib, evaluation, log)
