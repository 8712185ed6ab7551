#!/usr/bin/env bash
# Launch vswitchd as the forwarder under test for run-all.sh (FWD=cmd), between two interfaces.
#   FWD_PIDFILE=/tmp/fwd.pid FWD_CMD='taskset -c 1 benches/harness/packet/vswitch-fwd.sh {A} {B}' \
#     benches/harness/packet/run-all.sh --only 'afp ring3\+sendmmsg|ovs-netdev ports \(AF|^vswitchd' --add 'vswitchd ports|veth|cmd|UT|'
# Runs inside the node namespace. Environment:
#   VSWITCHD, VSWITCHCTL  the binaries (default: from PATH)
#   PORT_TYPE             afpacket (default) or tap
#   FLOWS                 ports (default: in_port=1->2, 2->1) or normal (the bridge's default NORMAL flow)
#   EXTRA_FLOWS=1         also install gen-10k-flows.sh's 10,000 non-matching rules above the forwarding rules
#   FWD_PIDFILE           where to write vswitchd's pid, so the harness measures vswitchd itself
#   VSWITCHD_ARGS         extra vswitchd options (word-split), e.g. '--rx-wait block'
set -u
A=$1 B=$2
HERE=$(cd "$(dirname "$0")" && pwd)
R=$(mktemp -d /tmp/vswitch-fwd.XXXXXX)
# shellcheck disable=SC2086
"${VSWITCHD:-vswitchd}" --rundir "$R" ${VSWITCHD_ARGS:-} &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$R"' EXIT
trap 'exit 0' INT TERM
for _ in $(seq 100); do [ -S "$R/vswitchd.ctl" ] && break; sleep 0.05; done
ctl() { "${VSWITCHCTL:-vswitchctl}" --rundir "$R" "$@" || { echo "vswitch-fwd: vswitchctl $* failed" >&2; exit 1; }; }
ctl add-br br0
ctl add-port br0 "$A" type="${PORT_TYPE:-afpacket}" ofport=1
ctl add-port br0 "$B" type="${PORT_TYPE:-afpacket}" ofport=2
if [ "${FLOWS:-ports}" = ports ]; then
  ctl del-flows br0
  ctl add-flow br0 priority=100,in_port=1,actions=output:2
  ctl add-flow br0 priority=100,in_port=2,actions=output:1
fi
if [ "${EXTRA_FLOWS:-0}" = 1 ]; then
  "$HERE/gen-10k-flows.sh" >"$R/10k.flows"
  ctl add-flows br0 "$R/10k.flows"
fi
[ -n "${FWD_PIDFILE:-}" ] && echo "$pid" >"$FWD_PIDFILE"
wait $pid
