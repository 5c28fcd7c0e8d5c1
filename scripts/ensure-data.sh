#!/usr/bin/env bash
# Make sure Fashion-MNIST is present. Order: $EDGESLIM_DATA, then the Debian package
# dataset-fashion-mnist (installed here when apt-get can be used). Otherwise edgeslim
# itself tries the official download once and explains what to do if that fails.
set -euo pipefail
DEBIAN_DIR=/usr/share/datasets/fashion-mnist
have() { [ -n "${1:-}" ] && [ -e "$1/train-images-idx3-ubyte.gz" -o -e "$1/train-images-idx3-ubyte" ]; }

if have "${EDGESLIM_DATA:-}" || have "$DEBIAN_DIR"; then
    exit 0
fi
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif sudo -n true 2>/dev/null; then sudo -n "$@"; else return 1; fi
}
echo "Fashion-MNIST not found; installing the Debian package dataset-fashion-mnist" >&2
if as_root apt-get update -qq && as_root apt-get install -y -qq dataset-fashion-mnist; then
    exit 0
fi
echo "warning: could not install dataset-fashion-mnist (no root/sudo or no apt)." >&2
echo "         edgeslim will try the official download, or pass --data-dir / set EDGESLIM_DATA." >&2
