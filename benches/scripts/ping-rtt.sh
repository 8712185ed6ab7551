#!/usr/bin/env bash
# Idle round-trip time through vswitchd: two pod namespaces, each with a veth into a node
# namespace where vswitchd (AF_PACKET ports, port-to-port flows, pinned to CPU $FWD_CPU) joins
# them; `ping -c $COUNT -i 0.01` after 5 warm-up pings, no other traffic. One line per case:
#   label p50 p90 avg max (ms)
#
#   benches/scripts/ping-rtt.sh                                  # default configuration
#   CASES='default|;block|--rx-wait block;v3|TAP_IO_AFPACKET_RING=v3' benches/scripts/ping-rtt.sh
#
# A case is LABEL|ARGS, ARGS being vswitchd options and/or VAR=value environment settings, or
# the word `linux-bridge` for the kernel's bridge as the reference (e.g. 'bridge|linux-bridge').
# As root. Namespaces pr-node, pr-p1, pr-p2 (10.211.0.1/24, 10.211.0.2/24): created here,
# deleted on exit; no route out of them.
set -euo pipefail
. "$(dirname "$0")/../harness/bench-lock.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VSWITCHD=${VSWITCHD:-$ROOT/target/release/vswitchd}
VSWITCHCTL=${VSWITCHCTL:-$ROOT/target/release/vswitchctl}
COUNT=${COUNT:-200}
FWD_CPU=${FWD_CPU:-1}
CASES=${CASES:-"default|"}
[ "$(id -u)" = 0 ] || { echo "ping-rtt.sh: run as root" >&2; exit 1; }

RUN=$(mktemp -d /tmp/ping-rtt.XXXXXX)
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    for n in pr-node pr-p1 pr-p2; do ip netns del $n 2>/dev/null || true; done
    rm -rf "$RUN"
}
trap cleanup EXIT INT TERM

topo() {
    for n in pr-node pr-p1 pr-p2; do ip netns del $n 2>/dev/null || true; ip netns add $n; ip -n $n link set lo up; done
    for i in 1 2; do
        ip -n pr-node link add prv$i type veth peer name eth0 netns pr-p$i
        ip -n pr-node link set prv$i up
        ip -n pr-p$i addr add 10.211.0.$i/24 dev eth0
        ip -n pr-p$i link set eth0 up
    done
}

one_case() {
    local label=$1 args=$2 envs=() opts=() a
    for a in $args; do
        case $a in *=*) [ "${a#--}" = "$a" ] && { envs+=("$a"); continue; } ;; esac
        opts+=("$a")
    done
    topo
    if [ "$args" = linux-bridge ]; then
        ip -n pr-node link add br0 type bridge
        ip -n pr-node link set prv1 master br0
        ip -n pr-node link set prv2 master br0
        ip -n pr-node link set br0 up
        measure "$label"
        return
    fi
    rm -rf "$RUN/d"; mkdir -p "$RUN/d"
    env "${envs[@]}" ip netns exec pr-node taskset -c "$FWD_CPU" "$VSWITCHD" --rundir "$RUN/d" "${opts[@]}" \
        2>"$RUN/vswitchd.log" &
    PID=$!
    for _ in $(seq 100); do [ -S "$RUN/d/vswitchd.ctl" ] && break; sleep 0.05; done
    local ctl=("$VSWITCHCTL" --rundir "$RUN/d")
    "${ctl[@]}" add-br br0 >/dev/null
    "${ctl[@]}" add-port br0 prv1 ofport=1 >/dev/null
    "${ctl[@]}" add-port br0 prv2 ofport=2 >/dev/null
    "${ctl[@]}" del-flows br0 >/dev/null
    "${ctl[@]}" add-flow br0 priority=100,in_port=1,actions=output:2 >/dev/null
    "${ctl[@]}" add-flow br0 priority=100,in_port=2,actions=output:1 >/dev/null
    measure "$label"
    kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; PID=""
}

measure() {
    local label=$1
    ip netns exec pr-p1 ping -c 5 -i 0.05 -W 1 10.211.0.2 >/dev/null || true
    ip netns exec pr-p1 ping -c "$COUNT" -i 0.01 -W 1 10.211.0.2 |
        sed -n 's/.*time=\([0-9.]*\).*/\1/p' | sort -n |
        awk -v l="$label" '{v[n++] = $1; s += $1}
            END { if (!n) { print l, "no replies"; exit }
                  printf "%s: p50=%.3f p90=%.3f avg=%.3f max=%.3f ms (%d replies)\n", l, v[int(n*0.5)], v[int(n*0.9)], s/n, v[n-1], n }'
}

IFS=';' read -r -a list <<<"$CASES"
for c in "${list[@]}"; do
    IFS='|' read -r label args <<<"$c"
    one_case "$label" "$args"
done
