#!/usr/bin/env bash
# What a Prometheus scrape of vswitchd's /metrics costs as the switch fills up: one vswitchd
# (no ports, nothing leaves the machine: the metrics server listens on 127.0.0.1), scraped
# SCRAPES times with curl at each step:
#   1. an empty bridge;
#   2. + FLOWS flows (distinct exact nw_dst, priority 200, actions=drop);
#   3. + CONNS conntrack entries (UDP frames sent through `packet-out ... ct(commit,zone=1)`,
#      each a 5-tuple of its own), checked with dump-drops.
# Prints, per step, what vswitchd itself reports about its scrapes (vswitch_scrape_gather_seconds:
# the time to read every counter; vswitch_scrape_conntrack_lock_seconds: how long the conntrack
# table's lock was held, i.e. how long ct traffic waited), median and max over the step, the
# wall time curl saw (process start and HTTP included) and the response size.
#
#   cargo build --release -p vswitch --bins
#   benches/scripts/metrics-scrape.sh                   # FLOWS=100000 CONNS=100000 SCRAPES=50
#   CONNS=1000000 benches/scripts/metrics-scrape.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
FLOWS=${FLOWS:-100000}
CONNS=${CONNS:-100000}
SCRAPES=${SCRAPES:-50}
PORT=${PORT:-19474}
D=${VSWITCHD:-target/release/vswitchd}
C=${VSWITCHCTL:-target/release/vswitchctl}
RUN=$(mktemp -d /tmp/metrics-scrape.XXXXXX)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$RUN"
}
trap cleanup EXIT

# Connections last an hour: none expires (and costs expiry work) while the step is measured.
"$D" --rundir "$RUN" --metrics-address "127.0.0.1:$PORT" --ct-max-conns $((CONNS + 1000)) \
    --ct-timeout other_first=3600 --ct-timeout other_multiple=3600 2>"$RUN/vswitchd.log" &
PID=$!
for _ in $(seq 100); do [ -S "$RUN/vswitchd.ctl" ] && break; sleep 0.1; done
"$C" --rundir "$RUN" add-br br0 >/dev/null
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

scrape_step() {
    local label=$1 size
    # One warm-up scrape: each scrape reports the previous one's gather time and lock hold.
    curl -s -o /dev/null "http://127.0.0.1:$PORT/metrics"
    for i in $(seq "$SCRAPES"); do
        curl -s -o "$RUN/metrics.$i.txt" -w '%{time_total}\n' "http://127.0.0.1:$PORT/metrics"
    done >"$RUN/times.txt"
    size=$(wc -c <"$RUN/metrics.1.txt")
    python3 - "$label" "$size" "$RUN" "$SCRAPES" <<'EOF'
import statistics, sys
label, size, run, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
wall = [float(x) * 1000 for x in open(f"{run}/times.txt").read().split()]
def gauge(name):
    out = []
    for i in range(1, n + 1):
        for line in open(f"{run}/metrics.{i}.txt"):
            if line.startswith(name + " "):
                out.append(float(line.split()[1]) * 1000)
    return out
g, lock = gauge("vswitch_scrape_gather_seconds"), gauge("vswitch_scrape_conntrack_lock_seconds")
print(f"| {label} | {statistics.median(g):.2f} / {max(g):.2f} ms | {statistics.median(lock):.2f} / {max(lock):.2f} ms "
      f"| {statistics.median(wall):.1f} ms | {size / 1024:.1f} KiB |")
EOF
}

echo "| switch state | gather, median / max | conntrack lock held, median / max | curl wall, median | response |"
echo "|---|---|---|---|---|"
scrape_step "empty bridge"

python3 - "$FLOWS" >"$RUN/flows.txt" <<'EOF'
import sys
for i in range(int(sys.argv[1])):
    print(f"priority=200,ip,nw_dst=10.{100 + (i >> 16) % 100}.{(i >> 8) & 255}.{i & 255},actions=drop")
EOF
"$C" --rundir "$RUN" add-flows br0 "$RUN/flows.txt"
scrape_step "+ $FLOWS flows"

# UDP 10.1.a.b:sport -> 10.2.0.1:53, one connection per frame, 2000 frames per packet-out.
python3 - "$CONNS" "$RUN/frames" <<'EOF'
import struct, sys
n, out = int(sys.argv[1]), sys.argv[2]
def csum(b):
    s = sum(struct.unpack(f"!{len(b)//2}H", b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
with open(out, "w") as f:
    line = []
    for i in range(n):
        src = bytes([10, 1, (i >> 14) & 255, (i >> 6) & 255])
        sport = 1024 + (i & 63)
        udp = struct.pack("!HHHH", sport, 53, 8, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, src, bytes([10, 2, 0, 1]))
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
        line.append((eth + ip + udp).hex())
        if len(line) == 2000:
            f.write(" ".join(line) + "\n"); line = []
    if line:
        f.write(" ".join(line) + "\n")
EOF
while read -r -a frames; do
    "$C" --rundir "$RUN" packet-out br0 CONTROLLER 'ct(commit,zone=1)' "${frames[@]}"
done <"$RUN/frames"
have=$("$C" --rundir "$RUN" dump-drops br0 | sed -n 's/.*conntrack: connections=\([0-9]*\).*/\1/p')
echo "(conntrack entries: $have)" >&2
[ "$have" -ge "$CONNS" ] || { echo "only $have of $CONNS connections were created" >&2; exit 1; }
scrape_step "+ $FLOWS flows + $have connections"
after=$("$C" --rundir "$RUN" dump-drops br0 | sed -n 's/.*conntrack: connections=\([0-9]*\).*/\1/p')
[ "$after" = "$have" ] || echo "note: $((have - after)) connections expired during the step" >&2
