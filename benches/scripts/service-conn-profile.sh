#!/usr/bin/env bash
# Where CPU 1 goes in the Service harness's `conn` case (benches/harness/services): the harness's
# own topology and TCP connection generator, one forwarder, then counters and a profile of the
# forwarder's core while connections run.
#
#   benches/scripts/service-conn-profile.sh BINDIR OUTDIR [SECS]   # BINDIR holds vswitchd, vswitchctl
#   benches/scripts/service-conn-profile.sh kernel OUTDIR [SECS]   # kube-proxy's nftables DNAT instead
#
# As root. Writes to OUTDIR: sys.txt (perf stat of the forwarder: sendmmsg, epoll_wait, naps,
# context switches, softirqs), sched0/1 (per-thread schedstat: run ns, wait ns, slices,
# voluntary/involuntary switches), irq0/1 (/proc/interrupts LOC/RES/CAL), stat0/1, softnet0/1,
# window.txt (ms, client frames sent), perf.data (`perf record -C 1 -g`), drops.txt (dump-drops:
# cache and conntrack counters), rss.txt, connrate.out. Everything runs in the harness's ct*
# namespaces and is removed on exit; the generator runs 3*SECS+4 s.
set -u
[ $# -ge 2 ] || { sed -n 2,14p "$0"; exit 2; }
BINDIR=$1; OUTD=$2; SECS=${3:-4}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
if [ "${IN_SID:-0}" != 1 ]; then IN_SID=1 exec setsid -w bash "$0" "$@"; fi
. "$ROOT/benches/harness/bench-lock.sh"
echo -10 >/proc/self/autogroup 2>/dev/null
mkdir -p "$OUTD"
export CT_DIR=$ROOT/benches/harness/services
source "$CT_DIR/lib.sh"
trap 'ct_cleanup; exit' EXIT INT TERM
: >"$CT_TMP/pids"
ct_build || exit 1
NSRC=32
if [ "$BINDIR" = kernel ]; then FWD=kernel; else FWD=cmd; fi
export FWD_START_CMD="VSWITCHD=$BINDIR/vswitchd VSWITCHCTL=$BINDIR/vswitchctl bash $ROOT/benches/scripts/conntrack-bench.sh --start-only"
topo_up || exit 1
"fwd_${FWD}_start" || exit 1
backends_start
ip netns exec ctc "$BIN/connrate" -n 300 -c 8 -t 3000 $VIP_HTTP:80 >"$OUTD/check.txt"
pid=${FWD_PID:-$$}
ip netns exec ctc taskset -c "$GEN_CPU" "$BIN/connrate" -c "$INFLIGHT" -w 2 -d $((SECS * 3 + 2)) -t 3000 \
    -S "$CLIENT_EXTRA.1/$NSRC" $VIP_HTTP:80 >"$OUTD/connrate.out" 2>"$OUTD/connrate.err" &
cpid=$!; track_pid $cpid
sleep 3
snap() { # $1: suffix
    for t in /proc/$pid/task/*; do
        echo "$(cat "$t/comm") $(cat "$t/schedstat") $(awk '/voluntary/ {printf "%s ", $2}' "$t/status")"
    done >"$OUTD/sched$1"
    cat /proc/net/softnet_stat >"$OUTD/softnet$1"
    grep -E '^cpu[01] ' /proc/stat >"$OUTD/stat$1"
    grep -E 'CAL|RES|LOC' /proc/interrupts >"$OUTD/irq$1"
}
snap 0
c0=$(_cnt ctc eth0 tx_packets); t0=$(date +%s%N)
perf stat -e 'syscalls:sys_enter_sendmmsg,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_clock_nanosleep,raw_syscalls:sys_enter,sched:sched_switch,sched:sched_wakeup,irq:softirq_entry' \
    -p "$pid" -o "$OUTD/sys.txt" -- sleep "$SECS"
t1=$(date +%s%N); c1=$(_cnt ctc eth0 tx_packets)
snap 1
echo "ms=$(((t1 - t0) / 1000000)) client_tx=$((c1 - c0))" >"$OUTD/window.txt"
perf record -C "$FWD_CPU" -g -o "$OUTD/perf.data" -- sleep "$SECS" 2>"$OUTD/perf-rec.err"
grep -E "VmRSS|VmHWM" /proc/$pid/status >"$OUTD/rss.txt" 2>/dev/null
wait $cpid
cat "$OUTD/connrate.out"
[ "$FWD" = cmd ] && "$BINDIR/vswitchctl" --rundir "$CT_TMP/vswitchd" dump-drops ctbr >"$OUTD/drops.txt" 2>&1
true
