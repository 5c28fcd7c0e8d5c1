"""Saving matplotlib figures: PNG, written atomically, figure closed (no display needed)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .._io import atomic_write_bytes


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
