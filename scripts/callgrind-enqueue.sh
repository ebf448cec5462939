#!/usr/bin/env bash
# Instructions per Enqueue, counted by valgrind's callgrind (deterministic, unlike time on a shared
# machine), and the 15 functions that execute the most instructions themselves.
#
# The server runs under callgrind with the Maildir as its email sink. After a warm-up, the counters
# are zeroed, COUNT Enqueues are sent (one email each, at CONCURRENCY), the run waits until the
# worker has delivered every one into the Maildir, and the counters are dumped: the figure is the
# whole server's instructions (gRPC, ledger, worker, Maildir write) divided by COUNT.
#
#   cargo build --release && scripts/callgrind-enqueue.sh
#   BIN=path/to/flyte-notify COUNT=2000 CONCURRENCY=16 KEEP=/tmp/enqueue.callgrind scripts/callgrind-enqueue.sh
set -euo pipefail

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/flyte-notify}
COUNT=${COUNT:-2000}
WARMUP=${WARMUP:-200}
CONCURRENCY=${CONCURRENCY:-16}
TOP=${TOP:-15}

command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "no binary at $BIN; cargo build --release first, or set BIN" >&2; exit 1; }

work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

RUST_LOG=warn,flyte_notify=info valgrind --tool=callgrind \
  --callgrind-out-file="$work/callgrind.out.%p" \
  "$BIN" serve --listen 127.0.0.1:0 --data-dir "$work/data" 2>"$work/server.log" &
server_pid=$!

addr=
for _ in $(seq 1 600); do
  addr=$(grep -o 'listening on [0-9.:]*' "$work/server.log" | awk '{print $3}' || true)
  [ -n "$addr" ] && break
  sleep 0.2
done
[ -n "$addr" ] || { echo "the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }

delivered() { ls "$work/data/maildir/new" 2>/dev/null | wc -l; }
wait_delivered() {
  for _ in $(seq 1 3000); do
    [ "$(delivered)" -ge "$1" ] && return 0
    sleep 0.2
  done
  echo "only $(delivered) of $1 delivered" >&2
  exit 1
}

"$BIN" bench --target "$addr" --count "$WARMUP" --concurrency "$CONCURRENCY" >/dev/null
wait_delivered "$WARMUP"
callgrind_control --zero "$server_pid" >/dev/null
"$BIN" bench --target "$addr" --count "$COUNT" --concurrency "$CONCURRENCY"
wait_delivered $((WARMUP + COUNT))
callgrind_control --dump=enqueues "$server_pid" >/dev/null
sleep 1

dump=$(ls -t "$work"/callgrind.out.* | head -1)
# KEEP=FILE keeps the dump, for callgrind_annotate --inclusive=yes or kcachegrind.
[ -n "${KEEP:-}" ] && cp "$dump" "$KEEP"
total=$(callgrind_annotate "$dump" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
echo "instructions: $total for $COUNT enqueues (each delivered into the Maildir)"
echo "instructions per Enqueue: $((total / COUNT))"
echo
echo "top $TOP functions by their own instructions (all threads):"
# callgrind_annotate 3.19 lists the runtime's frames that were on every thread's stack when the
# counters were zeroed and dumped (worker::run, task poll, thread_start) with the whole thread's
# cost as their own; they are scaffolding, not work, and left out.
scaffolding='tokio::runtime::(blocking::pool::Inner::run|task::(harness|core|raw)|context::|scheduler::multi_thread::worker::run)|thread_start|FnOnce::call_once\{\{vtable.shim\}\}$'
callgrind_annotate --inclusive=no --threshold=100 "$dump" \
  | awk '/file:function/ {on=1; next} on && NF && !/^-+$/' \
  | grep -Ev "$scaffolding" \
  | head -n "$TOP"
echo
echo "top $TOP of flyte-notify's, sqlx's and SQLite's functions, inclusive (with what they call):"
callgrind_annotate --inclusive=yes --threshold=100 "$dump" \
  | awk '/file:function/ {on=1; next} on && NF && !/^-+$/' \
  | grep -E 'flyte_notify::|sqlx_|sqlite3_step' \
  | head -n "$TOP"
