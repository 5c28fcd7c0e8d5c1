"""rich_table fits the terminal: never a cut header or value (``accu…``)."""
from rich.console import Console

from edgeslim.report import rich_table

WIDE = [{"model": f"runs/compressed/model-{i}.onnx", "file_bytes": 1_076_447, "p50_ms": 0.06556, "p90_ms": 0.1529,
         "p99_ms": 17.53, "throughput_per_s": 15_254.0, "session_init_ms": 1_640.0, "rss_increase_mb": 46.91,
         "threads": 2, "speedup": 1.15, "size_ratio": 1.0} for i in range(2)]


def render(table, width: int) -> str:
    console = Console(width=width, record=True, file=open("/dev/null", "w"))
    console.print(table)
    return console.export_text()


def test_a_table_that_fits_is_one_table_with_every_column():
    text = render(rich_table(WIDE, title="batch 1"), 200)
    assert "┃ throughput_per_s ┃" in text and "runs/compressed/model-0.onnx" in text and "…" not in text


def test_too_wide_for_80_columns_stacks_one_block_per_row():
    text = render(rich_table(WIDE, title="batch 1"), 80)
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    assert "model: runs/compressed/model-1.onnx" in text
    for key in WIDE[0]:  # every header and value, whole
        assert key in text
    assert "1,076,447" in text and "15,254" in text and "0.06556" in text


def test_narrow_columns_when_they_fit_and_the_rest_is_counted():
    text = render(rich_table(WIDE, title="batch 1", narrow=["model", "p50_ms", "speedup", "not-a-column"]), 80)
    assert "…" not in text and "p50_ms ┃" in text and "p99_ms" not in text
    assert "8 more column(s)" in text and "runs/compressed/model-1.onnx" in text


def test_narrow_columns_that_still_do_not_fit_fall_back_to_blocks():
    rows = [{"option": "split@/classifier/classifier.0/Flatten_output_0" * 2, "latency_ms": 1.5, "reason": ""}]
    text = render(rich_table(rows, narrow=["option", "latency_ms"]), 80)
    assert "…" not in text and "latency_ms 1.5" in text
    assert "reason" not in text  # empty values are left out of a block
    assert "".join(text.split()).count("split@/classifier/classifier.0/Flatten_output_0") == 2  # folded, whole
