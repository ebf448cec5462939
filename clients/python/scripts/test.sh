#!/usr/bin/env bash
# Tests the Python client: installs it with its test extras into a cached venv, checks that the
# generated code matches the protos, type-checks the package, and runs pytest against the real
# server binary. Runnable from anywhere, e.g. from the repo root in CI:
#
#   cargo build && bash clients/python/scripts/test.sh [pytest args...]
#
# The binary is found as tests/flytenotify_server.py says: $FLYTE_NOTIFY_BIN, else
# $CARGO_TARGET_DIR/debug/flyte-notify, else ~/.cache/flyte-notify-target/debug/flyte-notify, else
# <repo>/target/debug/flyte-notify. Pass `-m "not slow"` to skip the fresh-venv flytekit test.
# The tests marked flyte2_server need the server's Flyte 2 RPCs (EnqueueRunEvent, ListRules, ...).
#
# The test venv holds flytekit 1.16 and the Flyte 2 SDK (flyte 2.12) side by side; the Flyte 2
# fixtures (tests/fixtures/flyte2) are checked against that flyte's own serializer.
set -euo pipefail

client="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${FLYTENOTIFY_PYVENV:-${XDG_CACHE_HOME:-$HOME/.cache}/flytenotify-pyvenv}"
python="${PYTHON:-python3}"

if ! "$venv/bin/python" -c "import sys" 2>/dev/null; then
    echo "test.sh: creating $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi
# Every run, so that the editable install points at this checkout (CI clones afresh).
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$client[test]"

echo "== generated code" >&2
"$client/scripts/generate.sh" --check

echo "== Flyte 2 fixtures" >&2
"$venv/bin/python" "$client/../../tests/fixtures/flyte2/make_fixtures.py" --check

echo "== mypy" >&2
(cd "$client" && "$venv/bin/python" -m mypy)

echo "== pytest" >&2
cd "$client"
"$venv/bin/python" -m pytest "$@"

# The same suite (less the fresh-venv test) on the oldest versions pyproject.toml allows, so the
# floors stay true. flytekit and flyte are absent here, so their tests skip; the run above covers
# them. The Flyte 2 tests that need only flyteidl2 (the mirror, proto inputs) run here too.
echo "== pytest on the dependency floors" >&2
floors="$venv-floors"
if ! "$floors/bin/python" -c "import sys" 2>/dev/null; then
    rm -rf "$floors"
    "$python" -m venv "$floors"
fi
pins_text="$("$python" "$client/scripts/floor_requirements.py")"
mapfile -t pins <<<"$pins_text"
"$floors/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" "pytest>=8"
# Not editable: this also tests the built wheel (package data: the .pyi files, py.typed).
"$floors/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$client"
"$floors/bin/python" -m pip check
"$floors/bin/python" -c "import flytenotify, sys; sys.exit('site-packages' not in flytenotify.__file__)"
"$floors/bin/python" -m pytest -m "not slow" -p no:cacheprovider -q
