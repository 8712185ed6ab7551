#!/usr/bin/env bash
# Forwarder CPU per byte of one iperf3 TCP stream through the packet harness with the pods'
# offloads on, two vswitchd builds interleaved (two rounds): pod to pod and over VXLAN.
#   BEFORE=/tmp/old AFTER=/tmp/new benches/scripts/tcp-offload-cpu.sh OUT_DIR
# BEFORE/AFTER hold vswitchd and vswitchctl. Prints and writes OUT_DIR/cpu.csv:
#   path,build,round,gbps,forwarder_task_clock_ms_over_5s,cpu_s_per_GB,other_sessions_pct
# The forwarder's task-clock (both daemons for VXLAN) is read for 5 s in the middle of each
# run; Gbit/s is iperf3's for the whole run. Takes the machine-wide benchmark lock.
set -u
OUT=${1:?usage: BEFORE=dir AFTER=dir $0 OUT_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
. "$ROOT/benches/harness/bench-lock.sh"
mkdir -p "$OUT"; : >"$OUT/cpu.csv"
cd "$ROOT"
for rep in 1 2; do
for mode in ports vxlan; do
for v in before after; do
  if [ $v = before ]; then BIN=${BEFORE:?}; else BIN=${AFTER:?}; fi
  PIDF=$OUT/fwd.pid; rm -f "$PIDF"
  if [ $mode = ports ]; then
    ADD="vswitchd ports (pod offloads on) $v|veth|cmd|T|OFFLOADS=on"
    FWD="taskset -c 1 $ROOT/benches/harness/packet/vswitch-fwd.sh {A} {B}"
  else
    ADD="vswitchd vxlan (pod offloads on) $v|vxlan_base|cmd|T|OFFLOADS=on"
    FWD="taskset -c 1 $ROOT/benches/scripts/vswitch-vxlan-fwd.sh {A} {B}"
  fi
  FOREIGN_RETRIES=0 FWD_PIDFILE=$PIDF VSWITCHD=$BIN/vswitchd VSWITCHCTL=$BIN/vswitchctl FWD_CMD="$FWD" \
    REPS=1 TCP_SECS=10 benches/harness/packet/run-all.sh --only "^vswitchd" --add "$ADD" >"$OUT/h.log" 2>&1 &
  H=$!
  for _ in $(seq 300); do [ -s "$PIDF" ] && break; sleep 0.1; done
  sleep 4
  perf stat -x, -e task-clock -p "$(cat "$PIDF")" -o "$OUT/ps.txt" -- sleep 5 2>/dev/null
  wait $H
  ms=$(awk -F, '$3 ~ /task-clock/ {print $1}' "$OUT/ps.txt")
  row=$(grep "tcp:" "$OUT/h.log" | tail -1)
  g=$(echo "$row" | awk -F, '{print $3}'); f=$(echo "$row" | awk -F, '{print $5}')
  echo "$mode,$v,$rep,$g,$ms,$(awk -v ms="$ms" -v g="$g" 'BEGIN{printf "%.3f", (g>0)?ms/1000/(g*5/8):0}'),$f" | tee -a "$OUT/cpu.csv"
done; done; done
