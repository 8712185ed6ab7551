#!/usr/bin/env bash
# vswitchd as the VXLAN forwarder of the shared harness's `vxlan_base` topology (two nodes):
#   ab-p1[abp1] <-> [abn1]ab-n1[abu1] == underlay 192.168.254.0/24 == [abu2]ab-n2[abn2] <-> [abp2]ab-p2
# One vswitchd per node namespace: the pod veth is ofport 1, a VXLAN port (VNI 42) is ofport 2,
# port flows between them. Both daemons are named in FWD_PIDFILE ("pid1,pid2"), so the harness
# charges their CPU together, as it does for its two OVS daemons.
#
#   FWD_PIDFILE=/tmp/fwd.pid VSWITCHD=$PWD/target/release/vswitchd VSWITCHCTL=$PWD/target/release/vswitchctl \
#   FWD_CMD="taskset -c 1 $PWD/benches/scripts/vswitch-vxlan-fwd.sh {A} {B}" REPS=1 \
#     benches/harness/packet/run-all.sh --only '^vxlan kernel$|ovs-netdev vxlan|^vswitchd vxlan' \
#       --add 'vswitchd vxlan|vxlan_base|cmd|UT|'
# Runs inside ab-n1 (the harness's FWD_NS); reaches ab-n2 with `ip netns exec`.
# TUNNEL_TYPE=geneve puts Geneve ports (UDP 6081) in place of the VXLAN ones.
set -u
D=${VSWITCHD:-vswitchd}
C=${VSWITCHCTL:-vswitchctl}
R=$(mktemp -d /tmp/vswitch-vxlan-fwd.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$R"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

for i in 1 2; do
    peer=$((3 - i))
    ns=ab-n$i
    ip netns exec $ns ip addr add 192.168.254.$i/24 dev abu$i 2>/dev/null
    mkdir -p "$R/n$i"
    ip netns exec $ns "$D" --rundir "$R/n$i" 2>>"$R/n$i.log" &
    pids+=($!)
    for _ in $(seq 100); do [ -S "$R/n$i/vswitchd.ctl" ] && break; sleep 0.05; done
    ctl() { "$C" --rundir "$R/n$i" "$@" || { echo "vswitch-vxlan-fwd: vswitchctl $* failed" >&2; exit 1; }; }
    ctl add-br br0
    ctl add-port br0 abn$i ofport=1
    ctl add-port br0 vx$i type="${TUNNEL_TYPE:-vxlan}" ofport=2 options:remote_ip=192.168.254.$peer \
        options:local_ip=192.168.254.$i options:key=42
    ctl del-flows br0
    ctl add-flow br0 priority=100,in_port=1,actions=output:2
    ctl add-flow br0 priority=100,in_port=2,actions=output:1
done
[ -n "${FWD_PIDFILE:-}" ] && (IFS=,; echo "${pids[*]}" >"$FWD_PIDFILE")
wait
