"""Reports: Markdown/JSON files and terminal tables."""
from .tables import console_width, fmt, markdown_table, rich_table

__all__ = ["console_width", "fmt", "markdown_table", "rich_table"]
