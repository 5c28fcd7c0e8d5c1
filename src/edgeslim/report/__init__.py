"""Reports: Markdown/JSON files and terminal tables."""
from .tables import fmt, markdown_table, rich_table

__all__ = ["fmt", "markdown_table", "rich_table"]
