#!/usr/bin/env bash
# Create the virtual environment and install edgeslim into it.
# torch is installed first, pinned to the CPU build, so that the project's
# `torch>=2.2` range is already satisfied and pip never fetches a CUDA build.
set -euo pipefail
VENV="${1:-.venv}"
PYTHON="${PYTHON:-python3}"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif sudo -n true 2>/dev/null; then sudo -n "$@"; else return 1; fi
}

if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
        # Debian ships venv separately (python3-venv); install it when we can.
        rm -rf "$VENV"
        echo "python3 -m venv failed; installing python3-venv with apt-get" >&2
        as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv \
            || { echo "error: cannot create a virtual environment. Install python3-venv (apt-get install python3-venv) and retry." >&2; exit 1; }
        "$PYTHON" -m venv "$VENV"
    fi
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[dev]"
# litert-torch (the .tflite converter) pins typing-extensions<4.13, below what pydantic needs here,
# so it lives in VENV-litert: that venv sees VENV's packages through a .pth file placed after its
# own site-packages, so only the few pinned packages are its own. `edgeslim export --format tflite`
# runs the conversion there (edgeslim.export.tflite_export).
LITERT="$VENV-litert"
if [ ! -x "$LITERT/bin/python" ]; then
    BASE="$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix)')/bin/python3"
    "$BASE" -m venv "$LITERT"
fi
PURELIB="$("$LITERT/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$PURELIB/zz-edgeslim-base.pth"
"$LITERT/bin/python" -m pip install -q "torch==2.13.0" "litert-torch>=0.10,<0.11" "ai-edge-litert>=2.3,<2.4" \
    "typing-extensions==4.12.2" "cattrs==25.2.0"
"$LITERT/bin/python" -m pip check
