#!/usr/bin/env bash
# Regenerates the Python code for proto/flytenotify/v1/*.proto into src/flytenotify/v1/.
#   scripts/generate.sh          rewrite the generated files
#   scripts/generate.sh --check  regenerate into a temp dir; exit 1 if the committed files differ
#
# grpcio-tools is pinned exactly: its bundled protoc decides the bytes we commit, so the same pin
# always yields the same files. It lives in its own cached venv so that the pin never fights the
# test venv's grpcio/protobuf. Changing the pin changes the gencode's protobuf floor: see
# pyproject.toml before bumping it.
set -euo pipefail

GRPCIO_TOOLS_VERSION=1.62.3

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${FLYTENOTIFY_GEN_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/flytenotify-grpcio-tools-$GRPCIO_TOOLS_VERSION}"
python="${PYTHON:-python3}"

if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('grpcio-tools') != '$GRPCIO_TOOLS_VERSION')" 2>/dev/null; then
    echo "generate.sh: installing grpcio-tools==$GRPCIO_TOOLS_VERSION into $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "grpcio-tools==$GRPCIO_TOOLS_VERSION"
fi

exec "$venv/bin/python" "$here/generate.py" --grpcio-tools-version "$GRPCIO_TOOLS_VERSION" "$@"
