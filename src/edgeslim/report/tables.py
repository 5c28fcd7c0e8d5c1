"""Tables as Markdown (for report files) and as rich tables (for the terminal)."""
from __future__ import annotations

from typing import Any, Sequence


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    columns = list(columns or (rows[0].keys() if rows else []))
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def rich_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, title: str | None = None):
    from rich.table import Table

    columns = list(columns or (rows[0].keys() if rows else []))
    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="left" if c in ("model", "stage", "name") else "right")
    for r in rows:
        table.add_row(*(fmt(r.get(c, "")) for c in columns))
    return table
