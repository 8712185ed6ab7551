# Sourced by every benchmark script: one benchmark at a time on this machine, since they share
# namespace names and the two cores. Re-entrant: a script started by a locked one (a forwarder
# wrapper, conntrack-bench.sh's --start-only) does not wait for its parent.
if [ -z "${VSWITCH_BENCH_LOCKED:-}" ]; then
    exec 9>/run/lock/vswitch-bench.lock
    if ! flock -n 9; then
        echo "waiting for another benchmark on this machine to finish..." >&2
        flock -w "${BENCH_LOCK_WAIT:-3600}" 9 || { echo "gave up waiting for the benchmark lock" >&2; exit 1; }
    fi
    export VSWITCH_BENCH_LOCKED=1
fi
