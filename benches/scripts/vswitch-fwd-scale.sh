#!/usr/bin/env bash
# vswitchd as the forwarder under test for benches/harness/packet/run-all.sh (FWD=cmd), with the two
# knobs the shared wrapper lacks: forwarding threads and a large non-matching flow table.
#   FWD_PIDFILE=/tmp/fwd.pid VSWITCHD=$PWD/target/release/vswitchd VSWITCHCTL=$PWD/target/release/vswitchctl \
#   FWD_CMD="taskset -c 1 $PWD/benches/scripts/vswitch-fwd-scale.sh {A} {B}" REPS=1 \
#     benches/harness/packet/run-all.sh --only '^vswitchd' \
#       --add 'vswitchd 1 thread|veth|cmd|U|THREADS=1' --add 'vswitchd 2 threads|veth|cmd|U|THREADS=2' \
#       --add 'vswitchd +100k flows|veth|cmd|U|EXTRA_N=100000'
# Environment: THREADS (1; ports A and B land on threads 0 and 1 when 2), N_RXQ (unset: port A,
# where the generator's frames come in, is received by one thread; N: by N threads, its
# `options:n_rxq`), EXTRA_N (0: that many
# rules at priority 200 that never match the harness traffic, ~20 masks, above the two in_port
# forwarding rules), VSWITCHD, VSWITCHCTL, FWD_PIDFILE. Runs inside the harness's node namespace.
set -u
A=$1 B=$2
R=$(mktemp -d /tmp/vswitch-fwd-scale.XXXXXX)
# The metrics (in the harness's node namespace) say how the frames spread over the threads:
# read every second while the forwarder runs (the harness stops vswitchd itself), the last
# reading printed to stderr (the harness's fwd.log) when it has stopped.
METRICS=127.0.0.1:9490
"${VSWITCHD:-vswitchd}" --rundir "$R" --threads "${THREADS:-1}" --metrics-address "$METRICS" 2>"$R/log" &
pid=$!
( while kill -0 $pid 2>/dev/null; do
    curl -s -m 1 "http://$METRICS/metrics" | grep "^vswitch_thread_rx_packets_total" >"$R/rx.new" && mv "$R/rx.new" "$R/rx"
    sleep 1
  done ) &
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; sed "s/^/vswitch-fwd-scale: /" "$R/rx" >&2 2>/dev/null; rm -rf "$R"' EXIT
trap 'exit 0' INT TERM
for _ in $(seq 100); do [ -S "$R/vswitchd.ctl" ] && break; sleep 0.05; done
ctl() { "${VSWITCHCTL:-vswitchctl}" --rundir "$R" "$@" >/dev/null || { echo "vswitch-fwd-scale: vswitchctl $* failed" >&2; exit 1; }; }
ctl add-br br0
ctl add-port br0 "$A" ofport=1 ${N_RXQ:+options:n_rxq=$N_RXQ}
ctl add-port br0 "$B" ofport=2
ctl del-flows br0
ctl add-flow br0 priority=100,in_port=1,actions=output:2
ctl add-flow br0 priority=100,in_port=2,actions=output:1
n=${EXTRA_N:-0}
if [ "$n" -gt 0 ]; then
  # Harness traffic: 10.77.0.1 -> 10.77.0.2, UDP 1234|1024-2047 -> 9, TCP 5201; none of these match.
  awk -v n="$n" 'BEGIN {
    e = int(n / 2); p = int(n / 5); u = int(n / 5) - 1000; t = n - e - p - u - 1000;
    for (i = 0; i < e; i++) printf "priority=200,ip,nw_dst=10.%d.%d.%d,actions=drop\n", 100 + int(i / 62500), int(i / 250) % 250, i % 250 + 1;
    for (i = 0; i < p; i++) printf "priority=200,ip,nw_src=172.%d.%d.0/24,actions=drop\n", 16 + int(i / 256), i % 256;
    for (l = 8; l <= 32; l++) for (j = 0; j < 40; j++) {
      a = (l < 14) ? (100 + j) * 16777216 : 11 * 16777216 + j * 2 ^ (32 - l);
      printf "priority=200,ip,nw_dst=%d.%d.%d.%d/%d,actions=drop\n", int(a / 16777216) % 256, int(a / 65536) % 256, int(a / 256) % 256, a % 256, l }
    for (i = 0; i < u; i++) printf "priority=200,udp,tp_dst=%d,actions=drop\n", 10000 + i % 50000;
    for (i = 0; i < t; i++) printf "priority=200,tcp,nw_src=10.77.0.1,tp_dst=%d,actions=drop\n", 20000 + i % 40000;
  }' | sort -u >"$R/extra.flows"
  ctl add-flows br0 "$R/extra.flows"
  echo "vswitch-fwd-scale: $(wc -l <"$R/extra.flows") extra flows installed" >&2
fi
[ -n "${FWD_PIDFILE:-}" ] && echo "$pid" >"$FWD_PIDFILE"
wait $pid
