#!/usr/bin/env bash
# The demo cluster: two nodes, each a network namespace running its own vswitchd configured by
# a node file (`vswitchd --config`, docs/config.md), pods attached by the CNI plugin
# (`vswitch-cni` with the reference host-local IPAM, as a container runtime would call it), a
# VXLAN tunnel between the nodes, a ClusterIP Service whose three backends sit on both nodes, and
# an underlay router that is also a public host and an outside client: node 1's uplink serves it
# a NodePort and a LoadBalancer IP (backends on both nodes) and masquerades pods' egress to it.
# Then a second, small cluster in route mode on a VPC (two subnets behind a router, nodes
# reaching each other through it, a VPC host reaching pods directly, pods keeping their address
# towards the VPC). Then a third in mode eni (Cloud Native Network 2.0): pods as sub-ENIs (a
# VLAN each on the nodes' trunk uplinks), a VPC router, security groups, an EIP. Real traffic
# for each scenario, a pass/fail table, teardown.
#
#   scripts/demo.sh            # as root: installs missing packages, builds, runs, tears down
#   KEEP=1 scripts/demo.sh     # leave the cluster up to explore (scripts/demo.sh --down removes it)
#
# Everything lives in namespaces named dm-*; nothing is routed to the host.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

NS_NODES=(dm-node1 dm-node2 dm-public dm-vrouter dm-vnode1 dm-vnode3 dm-vhost dm-erouter dm-enode1 dm-enode2)
NS_PODS=(dm-client dm-web1 dm-web2 dm-web3 dm-vpod1 dm-vpod3 dm-epod1 dm-epod2 dm-epod3)
RUN=/tmp/vswitch-demo
GW_MAC=0a:58:0c:00:00:fe
VIP=10.247.0.10
LB_IP=198.18.0.5
NODE_PORT=30080
PUBLIC_HOST=203.0.113.10
OUTSIDE_CLIENT=198.51.100.10
ROUTER_MAC=02:00:c0:a8:00:01

down() {
    # SIGTERM: each vswitchd saves its state and hands its connections over in $RUN (a
    # restart keeps the node); waited for (5 s at most) so that nothing writes into $RUN
    # while it is removed. The TAP devices and the host firewall go with the namespaces.
    local pids=()
    for ns in "${NS_NODES[@]}" "${NS_PODS[@]}"; do
        if ip netns pids "$ns" >/dev/null 2>&1; then
            pids+=($(ip netns pids "$ns" 2>/dev/null))
        fi
    done
    if [ ${#pids[@]} -gt 0 ]; then
        kill "${pids[@]}" 2>/dev/null || true
        for _ in $(seq 50); do
            local alive=0 p
            for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
            [ $alive = 0 ] && break
            sleep 0.1
        done
    fi
    for ns in "${NS_NODES[@]}" "${NS_PODS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$RUN"
}

if [ "${1:-}" = "--down" ]; then down; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (it creates network namespaces)" >&2; exit 1; }

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Installing missing packages"
need=()
for p in ip:iproute2 ping:iputils-ping iperf3:iperf3 socat:socat nc:netcat-openbsd tcpdump:tcpdump ethtool:ethtool nft:nftables python3:python3 curl:curl; do
    command -v "${p%%:*}" >/dev/null || need+=("${p##*:}")
done
[ -x /usr/lib/cni/host-local ] || need+=(containernetworking-plugins)
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# No Rust toolchain (a fresh machine): rustup's, the version the workspace pins (rust-version).
if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] || curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y --profile minimal --default-toolchain "$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)" >/dev/null
    export PATH="$HOME/.cargo/bin:$PATH"
fi
echo "ok"

step "Building vswitchd, vswitchctl and the CNI plugin vswitch-cni (release)"
if [ -x target/release/vswitchd ] && [ -x target/release/vswitchctl ] && [ -x target/release/vswitch-cni ]; then
    echo "binaries found: cargo rebuilds only what changed (seconds)"
else
    echo "first build: cargo compiles ~150 crates in release mode; it usually takes 3-5 minutes on"
    echo "4 cores and 10-15 on 2 busy ones. cargo's progress follows (Compiling ... / Building [==> ] N/M)."
fi
build_start=$SECONDS
# cargo's own progress goes to the terminal (its bar when stderr is one, a line per crate otherwise).
cargo build --release --locked -p vswitch -p vswitch-cni --bins
echo "build done in $((SECONDS - build_start)) s"
D=$ROOT/target/release/vswitchd
C=$ROOT/target/release/vswitchctl
CNI_BIN_DIR=$ROOT/target/release

down
[ "${KEEP:-0}" = 1 ] || trap down EXIT
trap 'echo; echo interrupted; exit 130' INT TERM
mkdir -p "$RUN"

step "Creating the cluster: 2 nodes, 4 pods, a router, underlay 192.168.0.0/24, pods 172.16.0.0/16"
for ns in "${NS_NODES[@]}" "${NS_PODS[@]}"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
# The underlay is a bridge in the router's namespace (dm-public): 192.168.0.1, also the public
# host $PUBLIC_HOST and the outside client $OUTSIDE_CLIENT; it routes $LB_IP to node 1.
ip -n dm-public link add br0 address $ROUTER_MAC type bridge
for n in 1 2; do
    ip link add "und$n" netns "dm-node$n" type veth peer name "n$n" netns dm-public
    ip -n dm-public link set "n$n" master br0 up
    ip -n "dm-node$n" addr add "192.168.0.1$n/24" dev "und$n"; ip -n "dm-node$n" link set "und$n" up
done
ip -n dm-public link set br0 up
ip -n dm-public addr add 192.168.0.1/24 dev br0
ip -n dm-public addr add $PUBLIC_HOST/32 dev br0
ip -n dm-public addr add $OUTSIDE_CLIENT/32 dev br0
ip -n dm-public route add 198.18.0.0/24 via 192.168.0.11
# Node 1's kernel sees what its uplink sees: vswitchd's own nftables table (inet vswitchd)
# keeps it from resetting NodePort connections and replies to masqueraded ones.

# pod name, node, node-side link, IP, MAC, gateway

step "Writing each node's configuration (pods, peer, ClusterIP $VIP:80 over 3 backends, LoadBalancer $LB_IP:80 + NodePort $NODE_PORT)"
# The node agent compiles these into the pipeline (docs/pipeline.md): spoof guard, conntrack,
# Service load balancing by a select group committing the DNAT, L3 forwarding, VXLAN to the peer,
# local delivery; the gateway answers ARP and ping from flows. Node 1 also has an uplink on
# und1: outside clients of the LoadBalancer/NodePort (masqueraded to node 1's gateway so that
# node 2's backend answers through node 1) and pods' egress (masqueraded to 192.168.0.11).
node_config() { # node number, peer number
    local n=$1 p=$2
    cat <<TOML
[node]
name = "node$n"
underlay_ip = "192.168.0.1$n"
pod_cidr = "172.16.$n.0/24"
gateway_ip = "172.16.$n.1"
gateway_mac = "$GW_MAC"
mode = "tunnel"
$([ "$n" = 1 ] && echo 'underlay_interface = "und1"')

[tunnel]
vni = 100

[[peers]]
name = "node$p"
underlay_ip = "192.168.0.1$p"
pod_cidr = "172.16.$p.0/24"

[[services]]
name = "web"
cluster_ip = "$VIP"
port = 80
target_port = 8080
backends = [{ ip = "172.16.1.21" }, { ip = "172.16.1.22" }, { ip = "172.16.2.21" }]

[[services]]
name = "web-lb"
type = "LoadBalancer"
external_ip = "$LB_IP"
node_port = $NODE_PORT
port = 80
target_port = 8080
backends = [{ ip = "172.16.1.21" }, { ip = "172.16.2.21" }]
TOML
    if [ "$n" = 1 ]; then
        printf '\n[egress]\nsnat = true\nnext_hop_mac = "%s"\n' "$ROUTER_MAC"
    fi
}
node_config 1 2 >"$RUN/node1.toml"
node_config 2 1 >"$RUN/node2.toml"
echo "$RUN/node1.toml, $RUN/node2.toml"

step "Starting vswitchd --config on each node"
for n in 1 2; do
    mkdir -p "$RUN/node$n"
    ip netns exec "dm-node$n" "$D" --rundir "$RUN/node$n" --pidfile "$RUN/node$n/vswitchd.pid" \
        --config "$RUN/node$n.toml" 2>"$RUN/node$n/vswitchd.log" &
done
for n in 1 2; do
    for _ in $(seq 100); do [ -S "$RUN/node$n/vswitchd.ctl" ] && break; sleep 0.05; done
    [ -S "$RUN/node$n/vswitchd.ctl" ] || { cat "$RUN/node$n/vswitchd.log"; exit 1; }
done
ctl() { local n=$1; shift; "$C" --rundir "$RUN/node$n" "$@"; }

step "Attaching the pods with the CNI plugin (CNI ADD, host-local IPAM, as containerd would)"
# The network configuration a node's /etc/cni/net.d would hold (docs/cni.md); the plugin makes
# the veth pair, moves one end into the pod's namespace as eth0, sets address, routes and MTU
# from vswitchd's node-info, and registers the pod with vswitchd (add-pod: only its flows change).
cni_conf() { # node number
    cat <<JSON
{"cniVersion": "1.0.0", "name": "demo", "type": "vswitch-cni", "rundir": "$RUN/node$1",
 "bridge": "br-int",
 "ipam": {"type": "host-local", "dataDir": "$RUN/ipam-node$1",
          "ranges": [[{"subnet": "172.16.$1.0/24", "rangeStart": "172.16.$1.10",
                       "rangeEnd": "172.16.$1.200", "gateway": "172.16.$1.1"}]]}}
JSON
}
# pod namespace, node, address (the Services' backends are fixed addresses: IP= asks host-local for it)
while read -r pod n ip; do
    cni_conf "$n" | ip netns exec "dm-node$n" env CNI_COMMAND=ADD CNI_CONTAINERID="$pod" \
        CNI_NETNS="/var/run/netns/$pod" CNI_IFNAME=eth0 CNI_PATH="$CNI_BIN_DIR:/usr/lib/cni" \
        CNI_ARGS="IgnoreUnknown=1;IP=$ip" "$CNI_BIN_DIR/vswitch-cni" >"$RUN/$pod.cni.json" ||
        { echo "CNI ADD of $pod failed:"; cat "$RUN/$pod.cni.json"; exit 1; }
    echo "$pod: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["ips"][0]["address"], r["interfaces"][-1]["mac"])' "$RUN/$pod.cni.json")"
done <<PODS
dm-client 1 172.16.1.11
dm-web1 1 172.16.1.21
dm-web2 1 172.16.1.22
dm-web3 2 172.16.2.21
PODS
echo "node1 pods: $(ctl 1 list-pods | awk '{print $1}' | tr '\n' ' ')"
echo "node1: $(ctl 1 list-ports br-int | tr '\n' ' ')"
echo "node2: $(ctl 2 list-ports br-int | tr '\n' ' ')"
echo "node1: $(ctl 1 dump-flows br-int --no-stats | wc -l) flows, node2: $(ctl 2 dump-flows br-int --no-stats | wc -l) flows"

step "Starting backends (a tiny TCP server on :8080 in each web pod, iperf3 in dm-web3)"
for p in web1 web2 web3; do
    ip netns exec "dm-$p" socat -T 2 TCP-LISTEN:8080,fork,reuseaddr SYSTEM:"echo $p" >/dev/null 2>&1 &
done
ip netns exec dm-web3 iperf3 -s -1 -D >/dev/null 2>&1 || true
# The public host answers with the address and port it saw.
ip netns exec dm-public socat -T 2 TCP-LISTEN:9000,fork,reuseaddr \
    SYSTEM:'echo $SOCAT_PEERADDR port $SOCAT_PEERPORT' >/dev/null 2>&1 &
sleep 0.5

RESULTS=()
record() { RESULTS+=("$(printf "%-46s %-6s %s" "$1" "$2" "$3")"); }

ping_check() { # label, pod, dst: PASS only when all 5 requests are answered
    # (ping exits 0 as soon as one reply arrives, so the counts come from its summary line,
    # "5 packets transmitted, 5 received, ..."; the kernel holds the first request while ARP
    # resolves, so a first ping is not lost to ARP either).
    local out rtt sent got
    out=$(ip netns exec "$2" ping -c 5 -i 0.2 -W 1 "$3" 2>&1) || true
    read -r sent got < <(echo "$out" |
        sed -n 's/^\([0-9]*\) packets transmitted, \([0-9]*\) received.*/\1 \2/p') || true
    if [ "${sent:-0}" = 5 ] && [ "${got:-0}" = 5 ]; then
        rtt=$(echo "$out" | awk -F/ '/^rtt/ {print $5}')
        record "$1" PASS "5/5 replies, avg rtt ${rtt} ms"
    else
        record "$1" FAIL "${got:-0}/5 replies: $(echo "$out" | grep -m1 -E 'loss|unreachable' || true)"
    fi
}

step "Traffic"
ping_check "pod -> gateway (ARP + ping answered by flows)" dm-client 172.16.1.1
ping_check "pod -> pod, same node (ping)" dm-client 172.16.1.21
ping_check "pod -> pod, across nodes over VXLAN (ping)" dm-client 172.16.2.21
ping_check "pod -> pod, across nodes, reverse (ping)" dm-web3 172.16.1.11

declare -A seen=()
ok=0; total=30
for _ in $(seq $total); do
    r=$(ip netns exec dm-client timeout 3 nc -w 2 "$VIP" 80 </dev/null 2>/dev/null | head -1 || true)
    if [ -n "$r" ]; then ok=$((ok + 1)); seen[$r]=$(( ${seen[$r]:-0} + 1 )); fi
done
dist=$(for k in "${!seen[@]}"; do printf '%s=%s ' "$k" "${seen[$k]}"; done)
if [ "$ok" = "$total" ] && [ "${#seen[@]}" -ge 2 ]; then
    record "ClusterIP $VIP:80, $total TCP connections" PASS "backends: $dist"
else
    record "ClusterIP $VIP:80, $total TCP connections" FAIL "$ok/$total answered; backends: $dist"
fi

# From the other node, where one backend is the client itself (hairpin through the VIP).
ok=0; total=12; declare -A seen3=()
for _ in $(seq $total); do
    r=$(ip netns exec dm-web3 timeout 3 nc -w 2 "$VIP" 80 </dev/null 2>/dev/null | head -1 || true)
    if [ -n "$r" ]; then ok=$((ok + 1)); seen3[$r]=1; fi
done
if [ "$ok" = "$total" ]; then
    record "ClusterIP from node 2 (hairpin included)" PASS "$ok/$total, backends: ${!seen3[*]}"
else
    record "ClusterIP from node 2 (hairpin included)" FAIL "$ok/$total answered"
fi

# The node itself, through its host port (vswhost0): a pod across the tunnel, as kubelet's
# probes do, and a ClusterIP, as a hostNetwork process does.
ping_check "node 1 -> pod on node 2 (host port)" dm-node1 172.16.2.21
r=$(ip netns exec dm-node1 timeout 3 nc -w 2 "$VIP" 80 </dev/null 2>/dev/null | head -1 || true)
if [ -n "$r" ]; then
    record "node 1 -> ClusterIP $VIP:80 (host port)" PASS "answered by $r"
else
    record "node 1 -> ClusterIP $VIP:80 (host port)" FAIL "no answer"
fi

# From outside the cluster (the router's client address) to node 1: a NodePort and a
# LoadBalancer IP, balanced over web1 (node 1) and web3 (node 2, reply back through node 1).
outside_check() { # label, address, port
    local ok=0 total=16 r
    local -A got=()
    for _ in $(seq $total); do
        r=$(ip netns exec dm-public timeout 3 nc -w 2 -s $OUTSIDE_CLIENT "$2" "$3" </dev/null 2>/dev/null | head -1 || true)
        if [ -n "$r" ]; then ok=$((ok + 1)); got[$r]=$(( ${got[$r]:-0} + 1 )); fi
    done
    local dist
    dist=$(for k in "${!got[@]}"; do printf '%s=%s ' "$k" "${got[$k]}"; done)
    if [ "$ok" = "$total" ] && [ -n "${got[web1]:-}" ] && [ -n "${got[web3]:-}" ]; then
        record "$1" PASS "$ok/$total, backends: $dist"
    else
        record "$1" FAIL "$ok/$total answered; backends: $dist"
    fi
}
outside_check "NodePort 192.168.0.11:$NODE_PORT from outside" 192.168.0.11 $NODE_PORT
outside_check "LoadBalancer $LB_IP:80 from outside" $LB_IP 80

# A pod's connection to the public host leaves masqueraded to node 1's address.
r=$(ip netns exec dm-client timeout 3 nc -w 2 $PUBLIC_HOST 9000 </dev/null 2>/dev/null | head -1 || true)
if [ "${r%% *}" = 192.168.0.11 ]; then
    record "pod -> public host, egress SNAT" PASS "the host saw $r"
else
    record "pod -> public host, egress SNAT" FAIL "the host saw '${r:-nothing}'"
fi

# A pod sending with an address that is not its own: the spoof guard drops and counts it.
drops_before=$(ctl 1 dump-drops br-int | awk '$1=="flow_drop" {print $2}')
ip -n dm-client addr add 172.16.1.99/32 dev eth0
if ip netns exec dm-client ping -c 3 -i 0.2 -W 1 -I 172.16.1.99 172.16.1.21 >/dev/null 2>&1; then
    record "spoofed source address dropped" FAIL "the spoofed ping got through"
else
    drops_after=$(ctl 1 dump-drops br-int | awk '$1=="flow_drop" {print $2}')
    if [ $((drops_after - drops_before)) -ge 3 ]; then
        record "spoofed source address dropped" PASS "$((drops_after - drops_before)) packets counted (flow_drop)"
    else
        record "spoofed source address dropped" FAIL "dropped but not counted"
    fi
fi
ip -n dm-client addr del 172.16.1.99/32 dev eth0

if out=$(ip netns exec dm-client timeout 10 iperf3 -c 172.16.2.21 -t 3 -J 2>/dev/null); then
    gbps=$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.2f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))' 2>/dev/null || echo "?")
    record "TCP throughput across nodes (iperf3 3 s)" PASS "$gbps Gbit/s"
else
    record "TCP throughput across nodes (iperf3 3 s)" FAIL "iperf3 failed"
fi

step "Route mode on a VPC: two subnets behind a router, pods reachable from the VPC"
# A second, small cluster in route mode (docs/concepts.md): node v1 in 192.168.10.0/24 (with a
# VPC host .50), node v3 in 192.168.20.0/24, a router (.1 in each) whose route table sends each
# node's pod CIDR to it. The nodes list each other without MACs: pod traffic goes through the
# router, whose MAC each node resolves by ARP (node.underlay_gateway). The VPC keeps pod
# addresses (egress.no_snat_cidrs).
VR=dm-vrouter
# (Its namespaces were created with the others, above.)
ip netns exec $VR sysctl -qw net.ipv4.ip_forward=1
ip -n $VR link add bra type bridge; ip -n $VR link set bra up; ip -n $VR addr add 192.168.10.1/24 dev bra
for peer in dm-vnode1 dm-vhost; do
    ip link add "s-${peer#dm-}" netns $VR type veth peer name eth1 netns "$peer"
    ip -n $VR link set "s-${peer#dm-}" master bra up
done
ip link add s-vnode3 netns $VR type veth peer name eth1 netns dm-vnode3
ip -n $VR addr add 192.168.20.1/24 dev s-vnode3; ip -n $VR link set s-vnode3 up
ip -n dm-vnode1 addr add 192.168.10.11/24 dev eth1; ip -n dm-vnode1 link set eth1 up
ip -n dm-vnode3 addr add 192.168.20.13/24 dev eth1; ip -n dm-vnode3 link set eth1 up
ip -n dm-vhost addr add 192.168.10.50/24 dev eth1; ip -n dm-vhost link set eth1 up
ip -n dm-vhost route add default via 192.168.10.1
ip -n $VR route add 172.20.1.0/24 via 192.168.10.11
ip -n $VR route add 172.20.3.0/24 via 192.168.20.13
vnode_config() { # node number, its underlay address, its router, the peer's number and address
    cat <<TOML
[node]
name = "vnode$1"
underlay_ip = "$2"
underlay_interface = "eth1"
underlay_gateway = "$3"
pod_cidr = "172.20.$1.0/24"
gateway_ip = "172.20.$1.1"
gateway_mac = "$GW_MAC"
mode = "route"
host_port = false

[[peers]]
name = "vnode$4"
underlay_ip = "$5"
pod_cidr = "172.20.$4.0/24"

[[pods]]
port = "vpod$1"
ip = "172.20.$1.11"
mac = "0a:58:ac:14:0$1:0b"

[egress]
snat = true
no_snat_cidrs = ["192.168.0.0/16"]
TOML
}
vnode_config 1 192.168.10.11 192.168.10.1 3 192.168.20.13 >"$RUN/vnode1.toml"
vnode_config 3 192.168.20.13 192.168.20.1 1 192.168.10.11 >"$RUN/vnode3.toml"
for n in 1 3; do
    ip link add "vpod$n" netns "dm-vnode$n" type veth peer name eth0 netns "dm-vpod$n"
    ip -n "dm-vnode$n" link set "vpod$n" up
    ip -n "dm-vpod$n" link set eth0 address "0a:58:ac:14:0$n:0b"
    ip -n "dm-vpod$n" link set eth0 up
    ip -n "dm-vpod$n" addr add "172.20.$n.11/32" dev eth0
    ip -n "dm-vpod$n" route add "172.20.$n.1" dev eth0
    ip -n "dm-vpod$n" route add default via "172.20.$n.1"
    mkdir -p "$RUN/vnode$n"
    ip netns exec "dm-vnode$n" "$D" --rundir "$RUN/vnode$n" --config "$RUN/vnode$n.toml" \
        2>"$RUN/vnode$n/vswitchd.log" &
done
for n in 1 3; do
    for _ in $(seq 100); do [ -S "$RUN/vnode$n/vswitchd.ctl" ] && break; sleep 0.05; done
    [ -S "$RUN/vnode$n/vswitchd.ctl" ] || { cat "$RUN/vnode$n/vswitchd.log"; exit 1; }
done
echo "vnode1 -> router MAC $(ip -n $VR link show bra | awk '/ether/ {print $2}'), resolved: $("$C" --rundir "$RUN/vnode1" dump-flows br-int --no-stats | grep -c "$(ip -n $VR link show bra | awk '/ether/ {print $2}')") flows use it"
for ns in dm-vpod3 dm-vhost; do
    ip netns exec "$ns" socat -T 2 TCP-LISTEN:8081,fork,reuseaddr SYSTEM:'echo $SOCAT_PEERADDR' >/dev/null 2>&1 &
done
sleep 0.5
ping_check "route: pod -> pod in another subnet (router)" dm-vpod1 172.20.3.11
seen_check() { # label, client ns, address, the peer address the server must see
    local r
    r=$(ip netns exec "$2" timeout 3 nc -w 2 "$3" 8081 </dev/null 2>/dev/null | head -1 || true)
    if [ "$r" = "$4" ]; then record "$1" PASS "the server saw $r"; else record "$1" FAIL "the server saw '${r:-nothing}'"; fi
}
seen_check "route: VPC host -> pod, pod sees the host" dm-vhost 172.20.3.11 192.168.10.50
seen_check "route: pod -> VPC host keeps the pod IP" dm-vpod1 192.168.10.50 172.20.1.11
seen_check "route: pod -> pod across subnets (TCP)" dm-vpod1 172.20.3.11 172.20.1.11

step "Mode eni (Cloud Native Network 2.0): pods as sub-ENIs, security groups, an EIP"
# Two nodes whose uplinks are trunks on one plain bridge (in dm-erouter; this kind of kernel
# may lack 802.1Q devices and VLAN filtering, so the VPC's side of the sub-ENIs is a second
# vswitchd in the router namespace popping each VLAN onto a TAP the router's kernel routes
# on). Pods take addresses of the VPC subnet 192.168.70.0/24 (gateway .1, answered by the
# router, not the switch): epod1 on enode1 (VLAN 11, group web, EIP 100.100.0.11), epod2 on
# enode2 (VLAN 21, group web), epod3 on enode2 (VLAN 22, group locked: no ingress rule).
ER=dm-erouter
EGW_MAC=02:00:c0:a8:46:01
ip netns exec $ER sysctl -qw net.ipv4.ip_forward=1
for k in all default; do ip netns exec $ER sysctl -qw net.ipv4.conf.$k.rp_filter=0; done
ip -n $ER link add brt type bridge; ip -n $ER link set brt up
ip -n $ER link add tr0 type veth peer name tr0b
ip -n $ER link set tr0b master brt up
ip -n $ER link set tr0 address 02:00:c0:a8:1e:01 up
ip -n $ER addr add 192.168.30.1/24 dev tr0
ip -n $ER addr add 203.0.113.20/32 dev lo   # a public host, on the router itself
for n in 1 2; do
    ip link add "t-enode$n" netns $ER type veth peer name eth1 netns "dm-enode$n"
    ip -n $ER link set "t-enode$n" master brt up
    ip -n "dm-enode$n" addr add "192.168.30.1$n/24" dev eth1; ip -n "dm-enode$n" link set eth1 up
    ip -n "dm-enode$n" route add default via 192.168.30.1
done
mkdir -p "$RUN/etrunk"
ip netns exec $ER "$D" --rundir "$RUN/etrunk" 2>"$RUN/etrunk/vswitchd.log" &
for _ in $(seq 100); do [ -S "$RUN/etrunk/vswitchd.ctl" ] && break; sleep 0.05; done
T() { "$C" --rundir "$RUN/etrunk" "$@" >/dev/null; }
T add-br trunk
T add-port trunk tr0 type=afpacket ofport=1000
T add-flow trunk "table=0,priority=0,actions=drop"
sub_eni() { # VLAN, pod address: the router's interface for the sub-ENI
    T add-port trunk "e$1" type=tap "ofport=$1"
    T add-flow trunk "table=0,priority=100,in_port=1000,dl_vlan=$1,actions=pop_vlan,output:$1"
    T add-flow trunk "table=0,priority=100,in_port=$1,actions=mod_vlan_vid:$1,output:1000"
    ip -n $ER link set "e$1" address $EGW_MAC up
    ip netns exec $ER sysctl -qw "net.ipv4.conf.e$1.rp_filter=0"
    ip -n $ER addr add 192.168.70.1/32 dev "e$1"
    ip -n $ER route add "$2/32" dev "e$1"
}
enode_config() { # node number, then its pods as NAME:IP:VLAN:GROUP[:EIP]
    local n=$1; shift
    cat <<TOML
[node]
name = "enode$n"
underlay_ip = "192.168.30.1$n"
underlay_interface = "eth1"
underlay_gateway = "192.168.30.1"
pod_cidr = "192.168.70.0/24"
gateway_ip = "192.168.70.1"
gateway_mac = "$EGW_MAC"
mode = "eni"

[egress]
snat = true
no_snat_cidrs = ["192.168.0.0/16"]

[[security_groups]]
name = "web"
members = ["192.168.70.11", "192.168.70.21"]
rules = [
  { direction = "ingress", protocol = "tcp", ports = "8081", remote_group = "web" },
  { direction = "ingress", protocol = "tcp", ports = "8081", remote_cidr = "203.0.113.0/24" },
  { direction = "ingress", protocol = "icmp" },
]

[[security_groups]]
name = "locked"
TOML
    local p name ip vlan group eip
    for p in "$@"; do
        IFS=: read -r name ip vlan group eip <<<"$p"
        printf '\n[[pods]]\nport = "%s"\nip = "%s"\nmac = "0a:58:46:00:00:%02x"\nvlan = %s\nsecurity_groups = ["%s"]\n' \
            "$name" "$ip" "$vlan" "$vlan" "$group"
        if [ -n "$eip" ]; then printf 'eip = "%s"\n' "$eip"; fi
    done
}
enode_config 1 epod1:192.168.70.11:11:web:100.100.0.11 >"$RUN/enode1.toml"
enode_config 2 epod2:192.168.70.21:21:web epod3:192.168.70.22:22:locked >"$RUN/enode2.toml"
for spec in 1:epod1:192.168.70.11:11 2:epod2:192.168.70.21:21 2:epod3:192.168.70.22:22; do
    IFS=: read -r n pod ip vlan <<<"$spec"
    sub_eni "$vlan" "$ip"
    ip link add "$pod" netns "dm-enode$n" type veth peer name eth0 netns "dm-$pod"
    ip -n "dm-enode$n" link set "$pod" up
    ip -n "dm-$pod" link set eth0 address "$(printf '0a:58:46:00:00:%02x' "$vlan")" up
    ip -n "dm-$pod" addr add "$ip/32" dev eth0
    ip -n "dm-$pod" route add 192.168.70.1 dev eth0
    ip -n "dm-$pod" route add default via 192.168.70.1
done
ip -n $ER route add 100.100.0.11/32 via 192.168.70.11 dev e11 onlink   # the EIP, onto epod1's sub-ENI
for n in 1 2; do
    mkdir -p "$RUN/enode$n"
    ip netns exec "dm-enode$n" "$D" --rundir "$RUN/enode$n" --config "$RUN/enode$n.toml" \
        2>"$RUN/enode$n/vswitchd.log" &
done
for n in 1 2; do
    for _ in $(seq 100); do [ -S "$RUN/enode$n/vswitchd.ctl" ] && break; sleep 0.05; done
    [ -S "$RUN/enode$n/vswitchd.ctl" ] || { cat "$RUN/enode$n/vswitchd.log"; exit 1; }
done
for ns in dm-epod1 dm-epod2 dm-epod3 $ER; do
    ip netns exec "$ns" socat -T 2 TCP-LISTEN:8081,fork,reuseaddr SYSTEM:'echo $SOCAT_PEERADDR' >/dev/null 2>&1 &
done
sleep 0.5
ip netns exec $ER timeout 5 tcpdump -nn -e -c 1 -i t-enode1 vlan 11 >"$RUN/eni-wire.txt" 2>"$RUN/eni-wire.err" &
dump=$!
# Traffic only once tcpdump listens (a fixed sleep was not always enough on a busy machine).
for _ in $(seq 50); do grep -q "listening on" "$RUN/eni-wire.err" 2>/dev/null && break; sleep 0.1; done
seen_check "eni: pod -> pod on another node (sub-ENIs)" dm-epod1 192.168.70.21 192.168.70.11
wait "$dump" 2>/dev/null || true   # -c 1 ends it at the first tagged frame, timeout at 5 s
if grep -q "vlan 11" "$RUN/eni-wire.txt"; then
    record "eni: epod1's frames tagged on the trunk" PASS "vlan 11"
else
    record "eni: epod1's frames tagged on the trunk" FAIL "no tag seen"
fi
sg_denied() { "$C" --rundir "$RUN/enode$1" dump-drops br-int | awk '$1=="secgroup_denied" {print $2}'; }
before=$(sg_denied 2)
seen_check "eni: web refuses epod3 (same node, not web)" dm-epod3 192.168.70.21 ""
seen_check "eni: web refuses epod3 (other node)" dm-epod3 192.168.70.11 ""
after=$(sg_denied 2)
if [ "${after:-0}" -gt "${before:-0}" ]; then
    record "eni: the refusal is counted (secgroup_denied)" PASS "$before -> $after"
else
    record "eni: the refusal is counted (secgroup_denied)" FAIL "$before -> $after"
fi
r=$(ip netns exec $ER timeout 3 nc -w 2 -s 203.0.113.20 100.100.0.11 8081 </dev/null 2>/dev/null | head -1 || true)
if [ "$r" = 203.0.113.20 ]; then
    record "eni: client -> EIP reaches epod1" PASS "epod1 saw $r"
else
    record "eni: client -> EIP reaches epod1" FAIL "epod1 saw '${r:-nothing}'"
fi
seen_check "eni: epod1 -> public host leaves as its EIP" dm-epod1 203.0.113.20 100.100.0.11
seen_check "eni: epod2 (no EIP) -> public, masqueraded" dm-epod2 203.0.113.20 192.168.30.12

step "Results"
printf "%-46s %-6s %s\n" "scenario" "result" "detail"
printf '%s\n' "${RESULTS[@]}"
echo
echo "Where to look (while KEEP=1 leaves the cluster up):"
echo "  $C --rundir $RUN/node1 dump-flows br-int"
echo "  $C --rundir $RUN/node1 trace br-int in_port=1,tcp,dl_src=0a:58:ac:10:01:0b,nw_src=172.16.1.11,nw_dst=$VIP,tp_dst=80"
echo "  $C --rundir $RUN/node1 dump-drops br-int"
echo "  $C --rundir $RUN/node1 dump-conntrack br-int"
echo "A shared DNAT address, external_traffic_policy = \"local\" and a plain-Linux VXLAN"
echo "node are exercised by the end-to-end tests (vswitch/tests/e2e_cluster.rs, e2e_services.rs)."
ctl 1 dump-drops br-int | head -3
if printf '%s\n' "${RESULTS[@]}" | grep -q ' FAIL '; then exit 1; fi
