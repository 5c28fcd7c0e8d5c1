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


def console_width(stream) -> int | None:
    """The width for a rich Console writing to ``stream``: the terminal's (None: rich asks it, and
    honours $COLUMNS), else 160 so tables stay whole in a file or CI log."""
    import os

    return None if stream.isatty() or os.environ.get("COLUMNS") else 160


_LEFT = ("model", "stage", "name", "option", "cut", "description", "metric", "class", "reason")


class FittedTable:
    """A table that never cuts a header or a value to fit the terminal (rich would write
    ``accu…``): the whole table where each column's longest word fits; else only the
    ``narrow`` columns (when given and they fit), saying how many were left out; else one
    block per row, its first value as the heading and ``key value`` pairs flowing below.
    ``--json`` and the report files keep every column."""

    def __init__(self, rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None,
                 narrow: Sequence[str] | None = None):
        self.rows, self.columns, self.title = list(rows), list(columns), title
        self.narrow = [c for c in narrow if c in self.columns] if narrow else None

    def table(self, columns: Sequence[str]):
        from rich.table import Table

        table = Table(title=self.title)
        for c in columns:
            table.add_column(c, justify="left" if c in _LEFT else "right")
        for r in self.rows:
            table.add_row(*(fmt(r.get(c, "")) for c in columns))
        return table

    def stacked(self):
        from rich.columns import Columns
        from rich.console import Group
        from rich.text import Text

        first, rest = self.columns[0], self.columns[1:]
        parts = [Text(self.title, style="italic", justify="center")] if self.title else []
        for r in self.rows:
            parts.append(Text(f"{first}: {fmt(r.get(first, ''))}", style="bold", overflow="fold"))
            pairs = [Text.assemble((f"{c} ", "dim"), fmt(r[c]), overflow="fold")
                     for c in rest if r.get(c) not in (None, "")]
            parts.append(Columns(pairs, padding=(0, 3)))
        return Group(*parts)

    def __rich_console__(self, console, options):
        from rich.measure import Measurement

        def fits(renderable) -> bool:
            # measured unconstrained: under the real width rich clamps the minimum it reports
            unbounded = options.update_width(1 << 20)
            return Measurement.get(console, unbounded, renderable).minimum <= options.max_width

        full = self.table(self.columns)
        if fits(full):
            yield full
            return
        if self.narrow:
            narrow = self.table(self.narrow)
            if fits(narrow):
                from rich.text import Text

                yield narrow  # the note below, not a caption: rich cuts a caption wider than its table
                yield Text(f"{len(self.columns) - len(self.narrow)} more column(s) in a wider terminal or "
                           "with --json", style="dim")
                return
        yield self.stacked()


def rich_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, title: str | None = None,
               narrow: Sequence[str] | None = None) -> FittedTable:
    """``rows`` as a terminal table that fits the console's width (see FittedTable)."""
    columns = list(columns or (rows[0].keys() if rows else []))
    return FittedTable(rows, columns, title, narrow)
