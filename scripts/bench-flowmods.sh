#!/usr/bin/env bash
# bench-flowmods.sh - flow-mod throughput: flows/s installed by `add-flows` of N flows, for
#   vswitchctl add-flows            -> vswitchd
#   vswitchctl --bundle add-flows   -> vswitchd
#   ovs-ofctl --bundle add-flows    -> vswitchd
#   ovs-ofctl --bundle add-flows    -> Open vSwitch (private ovs-vswitchd, netdev bridge)
#   vswitchctl --bundle add-flows   -> Open vSwitch (same client, other switch)
# Every run starts from an empty table and ends with the switch's barrier reply (ovs-ofctl and
# vswitchctl both wait for it), then the flow count is checked with dump-aggregate.
#
# Usage: sudo scripts/bench-flowmods.sh [N...]     (default: 10000 100000; REPS=3, best kept)
# Needs root (ovs-vswitchd in a private netns), ovs-ofctl/ovs-vswitchd/ovsdb-server 3.1.
# Everything lives in a temp dir and one netns (bfm-ovs); both are removed at exit, and only
# the processes started here are stopped (by PID).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SIZES=${*:-10000 100000}
REPS=${REPS:-3}
T=$(mktemp -d /tmp/bench-flowmods.XXXXXX)
NS=bfm-ovs
PIDS=()

cleanup() {
    set +e
    if [ -S "$T/ovs/ovs-vswitchd.ctl" ]; then
        ovs_env ovs-appctl -t "$T/ovs/ovs-vswitchd.ctl" exit --cleanup >/dev/null 2>&1
        sleep 0.3
    fi
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    ip netns del "$NS" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { echo "bench-flowmods: needs root (ovs-vswitchd runs in a private netns)" >&2; exit 1; }
for b in ovs-ofctl ovs-vswitchd ovsdb-server ovsdb-tool ovs-vsctl; do
    command -v "$b" >/dev/null || { echo "bench-flowmods: $b not found (apt-get install openvswitch-switch)" >&2; exit 1; }
done

echo "building vswitch (release)..." >&2
(cd "$ROOT" && cargo build --release --locked -p vswitch --bins 2>&1 | tail -1) >&2
D=$ROOT/target/release/vswitchd
C=$ROOT/target/release/vswitchctl

# Flow sets shaped like benches/harness/packet/gen-10k-flows.sh (many masks, never-matching
# drops), scaled to N: exact dst, /24 src prefixes, dst prefixes of every length, L4 ports,
# L3+L4, exact L2 source.
gen_flows() {
    awk -v n="$1" 'BEGIN {
        for (i = 0; i < n; i++) {
            k = i % 6; j = int(i / 6)
            a = int(j / 65536) % 256; b = int(j / 256) % 256; c = j % 256
            if (k == 0) printf "priority=200,ip,nw_dst=10.%d.%d.%d,actions=drop\n", a, b, c
            else if (k == 1) printf "priority=200,ip,nw_src=172.%d.%d.0/24,actions=drop\n", 16 + int(j / 256), c
            else if (k == 2) printf "priority=%d,ip,nw_dst=11.%d.%d.0/%d,actions=drop\n", 201 + j, b, c, 8 + j % 25
            else if (k == 3) printf "priority=200,udp,nw_dst=10.78.%d.%d,tp_dst=%d,actions=output:2\n", a, b, 10000 + c
            else if (k == 4) printf "priority=200,tcp,nw_src=10.77.%d.%d,tp_dst=%d,actions=drop\n", a, b, 20000 + c
            else printf "priority=200,dl_src=02:cc:00:%02x:%02x:%02x,actions=drop\n", a, b, c
        }
    }'
}

now() { date +%s.%N; }
flow_count() { # CLIENT-CMD... -> flow_count from dump-aggregate
    "$@" | sed -n 's/.*flow_count=\([0-9]*\).*/\1/p'
}

# --- vswitchd
mkdir -p "$T/vs"
RUST_LOG=warn "$D" --rundir "$T/vs" >"$T/vs/log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -S "$T/vs/vswitchd.ctl" ] && break; sleep 0.05; done
"$C" --rundir "$T/vs" add-br bfm0
VS_SOCK=unix:$T/vs/bfm0.mgmt

# --- Open vSwitch: private ovsdb-server + ovs-vswitchd (in netns $NS), netdev bridge
ovs_env() { env OVS_RUNDIR="$T/ovs" OVS_DBDIR="$T/ovs" OVS_LOGDIR="$T/ovs" OVS_SYSCONFDIR="$T/ovs" "$@"; }
mkdir -p "$T/ovs"
ip netns add "$NS"
ovsdb-tool create "$T/ovs/conf.db" /usr/share/openvswitch/vswitch.ovsschema
ovs_env ovsdb-server "$T/ovs/conf.db" --remote="punix:$T/ovs/db.sock" --unixctl="$T/ovs/ovsdb-server.ctl" \
    --pidfile="$T/ovs/ovsdb-server.pid" --log-file="$T/ovs/ovsdb-server.log" --detach --no-chdir
PIDS+=("$(cat "$T/ovs/ovsdb-server.pid")")
ovs_env ovs-vsctl --db="unix:$T/ovs/db.sock" --no-wait init
ovs_env ip netns exec "$NS" ovs-vswitchd "unix:$T/ovs/db.sock" --unixctl="$T/ovs/ovs-vswitchd.ctl" \
    --pidfile="$T/ovs/ovs-vswitchd.pid" --log-file="$T/ovs/ovs-vswitchd.log" --detach --no-chdir \
    -vconsole:off -vfile:info
PIDS+=("$(cat "$T/ovs/ovs-vswitchd.pid")")
ovs_env ovs-vsctl --timeout=20 --db="unix:$T/ovs/db.sock" add-br bfm0 -- set bridge bfm0 datapath_type=netdev \
    -- set bridge bfm0 protocols=OpenFlow13
OVS_SOCK=unix:$T/ovs/bfm0.mgmt
for _ in $(seq 100); do [ -S "$T/ovs/bfm0.mgmt" ] && break; sleep 0.05; done

OFCTL="ovs-ofctl -O OpenFlow13 --timeout=600"

# run LABEL SOCK N FILE CLIENT...: best flows/s over REPS runs, table emptied before each.
declare -A RESULT
run() {
    local label=$1 sock=$2 n=$3 file=$4; shift 4
    local best=0 rep t0 t1 got rate
    for rep in $(seq "$REPS"); do
        $OFCTL del-flows "$sock"
        t0=$(now)
        "$@" add-flows "$sock" "$file"
        t1=$(now)
        got=$(flow_count $OFCTL dump-aggregate "$sock")
        [ "$got" = "$n" ] || { echo "bench-flowmods: $label: $got flows installed, expected $n" >&2; exit 1; }
        rate=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", n / (b - a) }')
        [ "$rate" -gt "$best" ] && best=$rate
    done
    RESULT["$label/$n"]=$best
    echo "  $label, $n flows: $best flows/s" >&2
}

for n in $SIZES; do gen_flows "$n" >"$T/flows.$n"; done

LABELS=("vswitchctl -> vswitchd" "vswitchctl --bundle -> vswitchd" "ovs-ofctl --bundle -> vswitchd" "ovs-ofctl --bundle -> OVS 3.1" "vswitchctl --bundle -> OVS 3.1")
NS_DONE=()
for f in "$T"/flows.*; do
    n=${f##*.}
    NS_DONE+=("$n")
    echo "N=$n" >&2
    run "${LABELS[0]}" "$VS_SOCK" "$n" "$f" "$C"
    run "${LABELS[1]}" "$VS_SOCK" "$n" "$f" "$C" --bundle
    run "${LABELS[2]}" "$VS_SOCK" "$n" "$f" $OFCTL --bundle
    run "${LABELS[3]}" "$OVS_SOCK" "$n" "$f" $OFCTL --bundle
    run "${LABELS[4]}" "$OVS_SOCK" "$n" "$f" "$C" --bundle
done

mapfile -t NS_SORTED < <(printf '%s\n' "${NS_DONE[@]}" | sort -n)
printf '\n| flows/s (best of %s) |' "$REPS"
for n in "${NS_SORTED[@]}"; do printf ' %s flows |' "$n"; done
printf '\n|---|'
for _ in "${NS_SORTED[@]}"; do printf -- '---|'; done
printf '\n'
for l in "${LABELS[@]}"; do
    printf '| %s |' "$l"
    for n in "${NS_SORTED[@]}"; do printf ' %s |' "${RESULT["$l/$n"]}"; done
    printf '\n'
done
# ratio ROW-LABEL A-INDEX B-INDEX: RESULT[A] / RESULT[B] per size.
ratio() {
    printf '| %s |' "$1"
    for n in "${NS_SORTED[@]}"; do
        awk -v a="${RESULT["${LABELS[$2]}/$n"]}" -v b="${RESULT["${LABELS[$3]}/$n"]}" 'BEGIN { printf " %.2f× |", a / b }'
    done
    printf '\n'
}
for i in 0 1; do
    ratio "${LABELS[$i]} vs ovs-ofctl --bundle -> OVS" "$i" 3
done
# The same client against both switches: the switch's share.
ratio "ovs-ofctl --bundle: vswitchd vs OVS" 2 3
ratio "vswitchctl --bundle: vswitchd vs OVS" 1 4
