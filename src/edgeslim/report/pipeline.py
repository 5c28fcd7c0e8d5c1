"""Reports of the compression pipeline and of the search: Markdown text and a Pareto plot."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .figures import save_figure
from .tables import markdown_table

REPORT_COLUMNS = ["stage", "what", "val_accuracy", "val_drop_points", "accuracy", "drop_points", "evaluated_with",
                  "file_bytes", "zstd_bytes", "nonzero_params", "macs", "p50_ms", "speedup"]
TERMINAL_COLUMNS = ["stage", "val_drop_points", "accuracy", "drop_points", "file_bytes", "macs", "p50_ms", "speedup"]
PARETO_COLUMNS = ["trial", "accuracy", "drop_points", "size_bytes", "p50_ms", "feasible", "sparsity",
                  "structured_ratio", "width", "kd_temperature", "share_bits", "bits"]
# what an 80-column terminal shows (rich_table's narrow columns); files and --json keep them all
TERMINAL_NARROW = ["stage", "accuracy", "drop_points", "file_bytes", "speedup"]
PARETO_NARROW = ["trial", "accuracy", "drop_points", "size_bytes", "p50_ms", "feasible"]


def compress_report_markdown(report: dict[str, Any]) -> str:
    b = report["budget"]
    verdict = (f"**{b['message']}**" if b["exceeded"] else
               f"within the accuracy budget: {b['final_drop_points']:.2f} points lost on the test split "
               f"({report['test']['samples']} samples; budget {b['max_accuracy_drop']:g})")
    lines = [f"# Compression report: recipe `{report['recipe']}`", "", report["description"], "",
             markdown_table(report["rows"], REPORT_COLUMNS), "",
             f"- {verdict}",
             f"- deployable result: `{Path(report['deployable']).name}` in this folder",
             "- every stage was judged on the validation split held out of training (`val_*` columns); the test "
             "split was measured once, for the original and the final model (`accuracy`, `drop_points`)",
             f"- file size: {report['size_reduction']:.1f}x smaller than the original float32 checkpoint "
             f"({report['zstd_size_reduction']:.1f}x after zstd)",
             f"- latency: ONNX Runtime, batch {report['bench']['batch']}, {report['bench']['threads'] or 'all'} "
             f"thread(s), {report['bench']['rounds']} interleaved rounds (edgeslim.runtime.benchmark)",
             "- accuracy: measured with torch for PyTorch stages and with ONNX Runtime for file stages; "
             "MACs of file stages are those of the PyTorch model they were made from",
             *[f"- warning: {w}" for w in report["warnings"]], "", "![stages](report.png)", ""]
    return "\n".join(lines)


def plot_stages(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Accuracy, file size and latency after each stage of a compression run (Agg backend)."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    names = [r["stage"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = [("validation accuracy (%)", [100 * r["val_accuracy"] for r in rows]),
              ("file size (KB)", [r["file_bytes"] / 1024 for r in rows]),
              ("latency p50 (ms)", [r.get("p50_ms") or 0.0 for r in rows])]
    for ax, (label, values) in zip(axes, panels):
        ax.bar(range(len(rows)), values, color=["black"] + ["tab:blue"] * (len(rows) - 1))
        ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(label, fontsize=10)
        if "accuracy" in label:
            ax.set_ylim(max(0.0, min(values) - 5), 100)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def pareto_markdown(rows: Sequence[dict[str, Any]], title: str = "Pareto front") -> str:
    return f"## {title}\n\n" + markdown_table(rows, PARETO_COLUMNS) + "\n"


def plot_pareto(rows: Sequence[dict[str, Any]], pareto_ids: set[int], path: str | Path,
                baseline: dict[str, Any] | None = None, title: str = "accuracy vs size") -> Path:
    """Two panels (accuracy vs size, accuracy vs latency); Pareto trials are highlighted,
    infeasible trials (over the accuracy budget) drawn as crosses. Agg backend: no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "size_bytes", "deployable size (KB, zstd)"),
                           (axes[1], "p50_ms", "latency p50 (ms, batch 1)")):
        for group, style in (("infeasible", dict(marker="x", color="tab:gray", label="over budget")),
                             ("feasible", dict(marker="o", color="tab:blue", alpha=0.5, label="feasible")),
                             ("pareto", dict(marker="*", s=140, color="tab:red", label="Pareto front"))):
            pts = [r for r in rows if _group(r, pareto_ids) == group]
            if pts:
                x = [r[key] / 1024 if key == "size_bytes" else r[key] for r in pts]
                ax.scatter(x, [100 * r["accuracy"] for r in pts], **style)
        if baseline:
            bx = baseline[key] / 1024 if key == "size_bytes" else baseline[key]
            ax.scatter([bx], [100 * baseline["accuracy"]], marker="s", color="black", label="original")
        ax.set_xlabel(label)
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].set_xscale("log")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def _group(row: dict[str, Any], pareto_ids: set[int]) -> str:
    if row["feasible"] != "yes":
        return "infeasible"
    return "pareto" if row["trial"] in pareto_ids else "feasible"
