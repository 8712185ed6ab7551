#!/usr/bin/env bash
# The Service (conntrack + DNAT + select group) benchmark: our vswitchd in the shared harness
# benches/harness/services, side by side with kube-proxy's nftables DNAT and Open vSwitch 3.1
# userspace, all running the same OpenFlow rules (the harness's ovs.flows / ovs.groups).
#
#   benches/scripts/conntrack-bench.sh                     # REPS=1, cases kernel-nft, ovs, ours
#   REPS=3 benches/scripts/conntrack-bench.sh
#   ONLY='^ours' benches/scripts/conntrack-bench.sh        # just our switch
#   ONLY='^kernel-nft sus|^ours sus' benches/scripts/conntrack-bench.sh \
#       --add 'ours sustained 1 client IP|FWD=cmd NSRC=1|sustain'   # more cases (harness --add)
#   XDP=on benches/scripts/conntrack-bench.sh              # ports with options:xdp=on (AF_XDP),
#                                                          # off (AF_PACKET only) or auto; unset:
#                                                          # the default (auto)
#   ONLY='^ours' benches/scripts/conntrack-bench.sh \
#       --add "ours block|FWD=cmd NSRC=32 VSWITCHD_ARGS='--rx-wait block'|conn"   # daemon flags
#   ONLY='^ours' benches/scripts/conntrack-bench.sh \
#       --add 'ours old|FWD=cmd NSRC=32 VSWITCHD=/tmp/old/vswitchd|conn'     # another build
#   benches/scripts/conntrack-bench.sh --start-only        # what FWD_START_CMD runs (needs the
#                                                          # harness topology and its env vars)
#
# As root. Results: /tmp/ct-bench-results/<stamp>/ (table.md, CSVs, progress.log); this script
# adds ours-ratios.md there. vswitchd runs in netns ctnode with ports ctv1..ctv4 as ofports 1..4
# (AF_PACKET), pinned to $FWD_CPU, rundir $CT_TMP/vswitchd (its log: vswitchd.log there; its
# drop counters after each case: $CT_TMP/vswitchd-drops.log).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HARNESS=${HARNESS:-$ROOT/benches/harness/services}
VSWITCHD=${VSWITCHD:-$ROOT/target/release/vswitchd}
VSWITCHCTL=${VSWITCHCTL:-$ROOT/target/release/vswitchctl}

# Started by the harness (fwd_cmd_start) once the topology exists, with CT_TMP, CT_FLOWS,
# CT_GROUPS and FWD_CPU set.
start_switch() {
    local run=$CT_TMP/vswitchd
    rm -rf "$run"
    mkdir -p "$run"
    # `ip netns exec` and `taskset` both exec: $! is vswitchd's own pid.
    # shellcheck disable=SC2086 # VSWITCHD_ARGS: words, e.g. '--rx-wait block'
    ip netns exec ctnode taskset -c "$FWD_CPU" "$VSWITCHD" --rundir "$run" \
        --pidfile "$run/vswitchd.pid" ${VSWITCHD_ARGS:-} 2>"$run/vswitchd.log" &
    echo $! >"$CT_TMP/fwd.pid.tmp"
    for _ in $(seq 100); do [ -S "$run/vswitchd.ctl" ] && break; sleep 0.05; done
    local ctl=("$VSWITCHCTL" --rundir "$run")
    "${ctl[@]}" add-br ctbr
    local k
    local opts=()
    [ -n "${XDP:-}" ] && opts=("options:xdp=$XDP")
    for k in 1 2 3 4; do "${ctl[@]}" add-port ctbr "ctv$k" "ofport=$k" "${opts[@]}"; done
    "${ctl[@]}" add-groups ctbr "$CT_GROUPS"
    "${ctl[@]}" del-flows ctbr
    "${ctl[@]}" add-flows ctbr "$CT_FLOWS"
    # Only a fully programmed switch counts as started.
    mv "$CT_TMP/fwd.pid.tmp" "$CT_TMP/fwd.pid"
}

if [ "${1:-}" = "--start-only" ]; then
    start_switch
    exit 0
fi

[ "$(id -u)" = 0 ] || { echo "conntrack-bench.sh: run as root (the harness creates namespaces)" >&2; exit 1; }
[ -x "$HARNESS/run-all.sh" ] || { echo "no harness at $HARNESS" >&2; exit 1; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -p vswitch --bins 2>&1 | tail -1)
fi

ctl_q() { printf '%q ' "$VSWITCHCTL" --rundir; }
# A case's own XDP=..., VSWITCHD_ARGS=... or VSWITCHD=... (harness --add) wins over the script's.
export FWD_START_CMD="XDP=\${XDP:-$(printf %q "${XDP:-}")} VSWITCHD_ARGS=\${VSWITCHD_ARGS:-$(printf %q "${VSWITCHD_ARGS:-}")} VSWITCHD=\${VSWITCHD:-$(printf %q "$VSWITCHD")} VSWITCHCTL=$(printf %q "$VSWITCHCTL") bash $(printf %q "$ROOT/benches/scripts/conntrack-bench.sh") --start-only"
# The harness runs the count command without CT_TMP in its environment.
RUNDIR_Q="\"\${CT_TMP:-/tmp/ct-anchor}/vswitchd\""
export FWD_COUNT_CMD="$(ctl_q)$RUNDIR_Q dump-conntrack ctbr | wc -l"
export FWD_STOP_CMD="{ date +%T; $(ctl_q)$RUNDIR_Q dump-drops ctbr | grep -vE ' 0  '; } >>\"\${CT_TMP:-/tmp/ct-anchor}/vswitchd-drops.log\" 2>&1 || true"

STAMP=$(date +%Y%m%d-%H%M%S)
export OUT=${OUT:-/tmp/ct-bench-results/$STAMP}
ONLY=${ONLY:-'^kernel-nft$|^ovs$|^ours'}
echo "+ REPS=${REPS:-1} $HARNESS/run-all.sh --only '$ONLY' --add 'ours|FWD=cmd NSRC=32|conn udp1 udpE tcp' $*"
REPS=${REPS:-1} "$HARNESS/run-all.sh" --only "$ONLY" --add 'ours|FWD=cmd NSRC=32|conn udp1 udpE tcp' "$@"

# Ratios of ours against the two references, within each round (median over rounds).
python3 - "$OUT" <<'PY' | tee "$OUT/ours-ratios.md"
import csv, statistics, sys
from collections import defaultdict
d = sys.argv[1]
def rows(n):
    try:
        return list(csv.DictReader(open(f"{d}/{n}")))
    except FileNotFoundError:
        return []
f = lambda x: float(x) if x not in (None, "", "-") else None
conn = {(r["case"], r["round"]): r for r in rows("conn.csv")}
tcp = {(r["case"], r["round"]): r for r in rows("tcp.csv")}
udp = defaultdict(list)
for r in rows("udp.csv"):
    udp[(r["case"], r["mode"], r["round"])].append(f(r["delivered"]))
rounds = sorted({k[1] for k in conn})
def med(fn):
    v = []
    for rd in rounds:
        try:
            v.append(fn(rd))
        except (KeyError, TypeError, ZeroDivisionError, ValueError):
            pass
    return f"{statistics.median(v):.2f}" if v else "-"
cps = lambda c, rd: f(conn[(c, rd)]["cps"])
fwd_us = lambda c, rd: f(conn[(c, rd)]["cpu_fwd"]) / 100 * 1e6 / cps(c, rd)
proc_us = lambda c, rd: f(conn[(c, rd)]["fwd_proc"]) / 100 * 1e6 / cps(c, rd)
ucap = lambda c, m, rd: max(x for x in udp[(c, m, rd)] if x is not None)
gbps = lambda c, rd: f(tcp[(c, rd)]["gbps"])
print("| ratio (ours = vswitchd) | value |")
print("|---|---|")
for ref, name in (("ovs", "OVS 3.1"), ("kernel-nft", "kernel nft")):
    print(f"| conn/s: ours / {name} | {med(lambda r: cps('ours', r) / cps(ref, r))} |")
    print(f"| forwarder-core busy µs/conn: ours / {name} | {med(lambda r: fwd_us('ours', r) / fwd_us(ref, r))} |")
    print(f"| UDP capacity (established): ours / {name} | {med(lambda r: ucap('ours', 'udpE', r) / ucap(ref, 'udpE', r))} |")
    print(f"| UDP capacity (one-way): ours / {name} | {med(lambda r: ucap('ours', 'udp1', r) / ucap(ref, 'udp1', r))} |")
    print(f"| TCP Gbit/s via VIP: ours / {name} | {med(lambda r: gbps('ours', r) / gbps(ref, r))} |")
print(f"| process µs/conn (perf task-clock): ours / OVS | {med(lambda r: proc_us('ours', r) / proc_us('ovs', r))} |")
PY
echo "results: $OUT"
