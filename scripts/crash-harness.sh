#!/usr/bin/env bash
# Issue #11's crash harness at full size (tests/replica_crash.rs, which CI runs with 10 kills): three
# `flyte-notify serve` replicas on one PostgreSQL database, all sending by SMTP to one sink; a load
# generator enqueues 10,000 notifications through whichever replica is up, while a random replica
# is SIGKILLed and restarted every few seconds, at least 20 times. Prints the report: accepted,
# delivered, lost, duplicates, the sends in flight at the kills, each kill, and each duplicate with
# the kill that explains it. Fails when anything accepted is lost or a duplicate has no kill to
# explain it.
#
# Needs what the tests need: PostgreSQL on 127.0.0.1:5432 with trust auth (another server:
# FLYTE_NOTIFY_TEST_POSTGRES=postgres://...; the run creates a database of its own there and drops
# it), and aiosmtpd (`.ci/run` installs it). Sizes, from the environment:
#   FLYTE_NOTIFY_CRASH_NOTIFICATIONS  default 10000
#   FLYTE_NOTIFY_CRASH_KILLS          default 20 (at least; more while the load is still going in)
#   FLYTE_NOTIFY_CRASH_KILL_EVERY     default 3s (the mean gap between kills)
#   FLYTE_NOTIFY_CRASH_SEED           random; the report names it, to replay a run's kills
# Arguments go to cargo, e.g. `scripts/crash-harness.sh --release`.
set -euo pipefail
cd "$(dirname "$0")/.."

export FLYTE_NOTIFY_CRASH_NOTIFICATIONS="${FLYTE_NOTIFY_CRASH_NOTIFICATIONS:-10000}"
export FLYTE_NOTIFY_CRASH_KILLS="${FLYTE_NOTIFY_CRASH_KILLS:-20}"
export FLYTE_NOTIFY_CRASH_KILL_EVERY="${FLYTE_NOTIFY_CRASH_KILL_EVERY:-3s}"
report="$(mktemp -t crash-harness.XXXXXX)"
trap 'rm -f "$report"' EXIT
export FLYTE_NOTIFY_CRASH_REPORT="$report"

python3 -c 'import aiosmtpd' 2>/dev/null || {
    echo "the sink needs aiosmtpd: python3 -m pip install 'aiosmtpd==1.4.6'" >&2
    exit 1
}
server="${FLYTE_NOTIFY_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
pg_isready -q -d "$server" || {
    echo "no PostgreSQL answers at $server (.ci/run starts the local one)" >&2
    exit 1
}

status=0
cargo test --locked "$@" --test replica_crash -- --nocapture || status=$?
if [ -s "$report" ]; then
    printf '\n== crash harness report\n'
    cat "$report"
fi
exit "$status"
