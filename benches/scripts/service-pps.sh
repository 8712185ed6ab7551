#!/usr/bin/env bash
# Established-flow packet rate through vswitchd: 64-byte UDP of ONE established connection
# through a ClusterIP (ct(nat) in zone 1 + the Service's select group, the shape of the agent's
# and the Service harness's rules) against the same traffic with plain forwarding flows (match
# nw_dst, set eth_dst, output), both measured in one run, alternating, on one vswitchd.
#
#   benches/scripts/service-pps.sh                 # REPS=3 rounds, RATES="100000 0" (0 = flat out)
#   REPS=1 SECS=3 RATES=0 benches/scripts/service-pps.sh
#   SKIP_BUILD=1 VSWITCHD=... VSWITCHCTL=... benches/scripts/service-pps.sh
#   CASES=service PERF=1 REPS=1 RATES=0 benches/scripts/service-pps.sh   # + perf record of
#                                                       # vswitchd: $WORK/perf-<case>.data
#   CASES=newconn RATES=0 benches/scripts/service-pps.sh  # new connections/s through the ClusterIP
#
# The `newconn` case sends every packet from a 5-tuple not seen before (udpflood -f: source
# ports 1024.., then the next source address), so each one is a new connection: conntrack miss,
# +new, the Service's select group, ct commit with DNAT, output. Delivered pps = new connections
# per second; the committed count from `dump-drops` is checked against it. The table is sized
# for it (CT_MAX, default 4.2M entries, ~1.6 GB).
#
# As root. Topology (all in namespaces this script creates and deletes: sp-node, sp-c, sp-b):
#   sp-c[eth0 172.16.1.11] ⇄ [spv1 ofport 1] vswitchd in sp-node [spv2 ofport 2] ⇄ sp-b[eth0]
# The endpoint is a "sink" address 172.16.1.31 behind sp-b whose MAC sp-b does not own: sp-b's
# kernel counts each frame (rx_packets) and drops it at once (no socket, no ICMP). ClusterIP case:
# client → 10.247.0.12:53, DNAT to 172.16.1.31:5353; plain case: client → 172.16.1.31:5353.
# Before the ClusterIP case one frame each way makes the conntrack entry established (+est).
# Generator (udpflood from benches/harness/services/src, bounded by -s) on CPU $GEN_CPU,
# vswitchd on CPU $FWD_CPU. Per step: WARMUP s, then SECS s measured. Columns: offered and
# delivered pps, vswitchd CPU (sum of its threads' schedstat run time) per delivered packet (the
# fair figure on a shared machine), the forwarder core's busy time per delivered packet, and how
# much of that core other work took (softirqs, other processes: a noisy measurement if high).
set -euo pipefail
. "$(dirname "$0")/../harness/bench-lock.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SRC=${SRC:-$ROOT/benches/harness/services/src}
VSWITCHD=${VSWITCHD:-$ROOT/target/release/vswitchd}
VSWITCHCTL=${VSWITCHCTL:-$ROOT/target/release/vswitchctl}
REPS=${REPS:-3}
SECS=${SECS:-4}
WARMUP=${WARMUP:-1}
RATES=${RATES:-"100000 0"}
CASES=${CASES:-"plain service"}
PERF=${PERF:-0}
GEN_CPU=${GEN_CPU:-0}
FWD_CPU=${FWD_CPU:-1}
WORK=${WORK:-/tmp/sp-bench}
BIN=$WORK/bin
RUN=$WORK/vswitchd

[ "$(id -u)" = 0 ] || { echo "service-pps.sh: run as root (it creates namespaces)" >&2; exit 1; }
for ns in sp-node sp-c sp-b; do
    if ip netns list | grep -qw "$ns"; then
        echo "service-pps.sh: namespace $ns exists (another run?); delete it first" >&2
        exit 1
    fi
done
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -p vswitch --bins 2>&1 | tail -1)
fi
mkdir -p "$BIN" "$RUN"
[ -x "$BIN/udpflood" ] || gcc -O2 -o "$BIN/udpflood" "$SRC/udpflood.c"

C_IP=172.16.1.11 C_MAC=0a:58:0c:00:00:01
B_IP=172.16.1.21 B_MAC=0a:58:0c:00:00:02
SINK_IP=172.16.1.31 SINK_MAC=0a:58:0c:00:0f:02
GW_MAC=0a:58:0c:00:00:fe
VIP=10.247.0.12

VSWITCHD_PID=""
GEN_PID=""
cleanup() {
    [ -n "$GEN_PID" ] && kill "$GEN_PID" 2>/dev/null || true
    if [ -n "$VSWITCHD_PID" ]; then
        kill -TERM "$VSWITCHD_PID" 2>/dev/null || true
        wait "$VSWITCHD_PID" 2>/dev/null || true
    fi
    for ns in sp-c sp-b sp-node; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
for ns in sp-node sp-c sp-b; do
    ip netns add "$ns"
    nsx "$ns" ip link set lo up
    nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add spv1 netns sp-node type veth peer name eth0 netns sp-c
ip link add spv2 netns sp-node type veth peer name eth0 netns sp-b
nsx sp-c ip link set eth0 address $C_MAC
nsx sp-b ip link set eth0 address $B_MAC
for p in sp-c sp-b; do
    nsx "$p" ip link set eth0 up
    nsx "$p" ethtool -K eth0 tx off >/dev/null 2>&1 || true
done
nsx sp-c ip addr add $C_IP/24 dev eth0
nsx sp-b ip addr add $B_IP/24 dev eth0
nsx sp-node ip link set spv1 up
nsx sp-node ip link set spv2 up

CT_MAX=${CT_MAX:-4200000}
NEWCONN_FLOWS=${NEWCONN_FLOWS:-4000000}
taskset -c "$FWD_CPU" ip netns exec sp-node "$VSWITCHD" --rundir "$RUN" --fresh --ct-max-conns "$CT_MAX" \
    2>"$WORK/vswitchd.log" &
VSWITCHD_PID=$!
for _ in $(seq 100); do [ -S "$RUN/vswitchd.ctl" ] && break; sleep 0.05; done
ctl() { "$VSWITCHCTL" --rundir "$RUN" "$@"; }
ctl add-br br0
ctl add-port br0 spv1 ofport=1
ctl add-port br0 spv2 ofport=2

cat >"$WORK/plain.flows" <<EOF
table=0,priority=100,ip,nw_dst=$C_IP,actions=set_field:$C_MAC->eth_dst,output:1
table=0,priority=100,ip,nw_dst=$SINK_IP,actions=set_field:$SINK_MAC->eth_dst,output:2
table=0,priority=0,actions=drop
EOF
cat >"$WORK/service.flows" <<EOF
table=0,priority=100,ip,actions=ct(table=1,zone=1,nat)
table=0,priority=0,actions=drop
table=1,priority=100,ct_state=+new+trk,udp,nw_dst=$VIP,tp_dst=53,actions=group:3
table=1,priority=80,ct_state=+new+trk,ip,nw_dst=172.16.1.0/24,actions=ct(commit,table=2,zone=1)
table=1,priority=70,ct_state=+est+trk,ip,actions=resubmit(,2)
table=1,priority=60,ct_state=+inv+trk,ip,actions=drop
table=2,priority=100,ip,nw_dst=$C_IP,actions=set_field:$C_MAC->eth_dst,output:1
table=2,priority=100,ip,nw_dst=$SINK_IP,actions=set_field:$SINK_MAC->eth_dst,output:2
EOF
echo "group_id=3,type=select,bucket=weight:100,actions=ct(commit,table=2,zone=1,nat(dst=$SINK_IP:5353))" \
    >"$WORK/service.groups"

program() { # CASE
    ctl del-flows br0
    ctl del-groups br0
    ctl flush-conntrack br0
    if [ "$1" = plain ]; then
        ctl add-flows br0 "$WORK/plain.flows"
    elif [ "$1" = newconn ]; then
        ctl add-groups br0 "$WORK/service.groups"
        ctl add-flows br0 "$WORK/service.flows"
    else
        ctl add-groups br0 "$WORK/service.groups"
        ctl add-flows br0 "$WORK/service.flows"
        # One frame each way: the entry has seen a reply, every later packet is +est.
        nsx sp-c "$BIN/udpflood" -N 1 -p 1234 -P 53 eth0 $C_MAC $GW_MAC $C_IP $VIP >/dev/null
        sleep 0.1
        nsx sp-b "$BIN/udpflood" -N 1 -p 5353 -P 1234 eth0 $SINK_MAC $GW_MAC $SINK_IP $C_IP >/dev/null
        sleep 0.1
        if ! ctl dump-conntrack br0 | grep -q "reply=(src=$SINK_IP"; then
            echo "service-pps.sh: no conntrack entry after priming:" >&2
            ctl dump-conntrack br0 >&2
            exit 1
        fi
    fi
}

cnt() { nsx "$1" cat "/sys/class/net/$2/statistics/$3"; }
run_ns() { # sum of vswitchd's threads' run time (ns)
    cat /proc/"$VSWITCHD_PID"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'
}
idle_ticks() { awk -v c="cpu$FWD_CPU" '$1 == c {print $5 + $6}' /proc/stat; }
HZ=$(getconf CLK_TCK)

# measure CASE RATE -> "offered delivered vswitchd_ns_per_pkt core_ns_per_pkt other_pct"
measure() {
    local case=$1 rate=$2 dst=$VIP dport=53 r="" flows=""
    [ "$case" = plain ] && { dst=$SINK_IP; dport=5353; }
    [ "$case" = newconn ] && flows="-f $NEWCONN_FLOWS"
    [ "$rate" != 0 ] && r="-r $rate"
    local total
    total=$(awk -v w="$WARMUP" -v s="$SECS" 'BEGIN {print w + s + 0.5}')
    # shellcheck disable=SC2086
    taskset -c "$GEN_CPU" ip netns exec sp-c "$BIN/udpflood" -s "$total" $r $flows -p 1234 -P $dport \
        eth0 $C_MAC $GW_MAC $C_IP $dst >>"$WORK/udpflood.log" 2>&1 &
    GEN_PID=$!
    sleep "$WARMUP"
    local t0 tx0 rx0 cpu0 idle0 t1 tx1 rx1 cpu1 idle1
    t0=$(date +%s%N); tx0=$(cnt sp-c eth0 tx_packets); rx0=$(cnt sp-b eth0 rx_packets)
    cpu0=$(run_ns); idle0=$(idle_ticks)
    if [ "$PERF" = 1 ]; then
        perf record -q -g -p "$VSWITCHD_PID" -o "$WORK/perf-$case.data" -- sleep "$SECS" \
            >/dev/null 2>&1 || sleep "$SECS"
    else
        sleep "$SECS"
    fi
    t1=$(date +%s%N); tx1=$(cnt sp-c eth0 tx_packets); rx1=$(cnt sp-b eth0 rx_packets)
    cpu1=$(run_ns); idle1=$(idle_ticks)
    wait "$GEN_PID" || true
    GEN_PID=""
    awk -v dt=$((t1 - t0)) -v tx=$((tx1 - tx0)) -v rx=$((rx1 - rx0)) -v cpu=$((cpu1 - cpu0)) \
        -v idle=$((idle1 - idle0)) -v hz="$HZ" 'BEGIN {
        s = dt / 1e9; busy = s - idle / hz; if (busy < 0) busy = 0;
        if (rx < 1) rx = 1;
        other = 100 * (busy - cpu / 1e9) / s; if (other < 0) other = 0;
        printf "%.0f %.0f %.0f %.0f %.0f\n", tx / s, rx / s, cpu / rx, busy * 1e9 / rx, other }'
    sleep 0.3
}

OUT=$WORK/results.csv
echo "round,rate,case,offered_pps,delivered_pps,vswitchd_ns_per_pkt,core_ns_per_pkt,other_on_fwd_core_pct" >"$OUT"
for round in $(seq "$REPS"); do
    for rate in $RATES; do
        for case in $CASES; do
            program "$case"
            read -r off del vns cns oth < <(measure "$case" "$rate")
            echo "$round,$rate,$case,$off,$del,$vns,$cns,$oth" | tee -a "$OUT" >&2
            if [ "$case" = newconn ]; then
                ctl dump-drops br0 | grep '^conntrack:' | tr ' ' '\n' \
                    | grep -E '^(connections|committed|drop_table_full)=' | tr '\n' ' ' >&2
                echo >&2
            fi
        done
    done
done
ctl dump-drops br0 | awk '$2 != "0"' >"$WORK/drops.txt" || true

python3 - "$OUT" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
rates = list(dict.fromkeys(r["rate"] for r in rows))
med = lambda xs: statistics.median(xs) if xs else float("nan")
def pick(rate, case, col):
    return [float(r[col]) for r in rows if r["rate"] == rate and r["case"] == case]
print("| offered | flows | delivered pps | vswitchd ns/pkt | fwd core ns/pkt | other load on fwd core |")
print("|---|---|---|---|---|---|")
for rate in rates:
    label = "flat out" if rate == "0" else f"{int(rate) // 1000}k pps"
    for case, name in (("plain", "plain forwarding"), ("service", "ClusterIP ct+DNAT, established"),
                       ("newconn", "ClusterIP, every packet a new connection (new conn/s)")):
        if not pick(rate, case, "delivered_pps"):
            continue
        print(f"| {label} | {name} | {med(pick(rate, case, 'delivered_pps')):.0f} | "
              f"{med(pick(rate, case, 'vswitchd_ns_per_pkt')):.0f} | {med(pick(rate, case, 'core_ns_per_pkt')):.0f} | "
              f"{med(pick(rate, case, 'other_on_fwd_core_pct')):.0f} % |")
print()
# At a fixed rate, per-packet cost depends on the rate (batching): a round counts only if both
# cases delivered >= 90 % of it (a busy machine can starve the generator or the switch).
print("| offered | ClusterIP / plain: vswitchd ns/pkt | fwd core ns/pkt | plain / ClusterIP: delivered pps | rounds used |")
print("|---|---|---|---|---|")
for rate in rates:
    label = "flat out" if rate == "0" else f"{int(rate) // 1000}k pps"
    def one(rd, case):
        return next((r for r in rows if r["round"] == rd and r["rate"] == rate and r["case"] == case), None)
    used = []
    for rd in sorted({r["round"] for r in rows}):
        p, s = one(rd, "plain"), one(rd, "service")
        if p and s and (rate == "0" or min(float(p["delivered_pps"]), float(s["delivered_pps"])) >= 0.9 * int(rate)):
            used.append((p, s))
    def ratio(col, inv=False):
        out = [float(p[col]) / float(s[col]) if inv else float(s[col]) / float(p[col])
               for p, s in used if float(p[col]) and float(s[col])]
        return f"{med(out):.2f}"
    print(f"| {label} | {ratio('vswitchd_ns_per_pkt')} | {ratio('core_ns_per_pkt')} | "
          f"{ratio('delivered_pps', True)} | {len(used)} of {len({r['round'] for r in rows})} |")
PY
echo "rows: $OUT; vswitchd drop counters: $WORK/drops.txt"
