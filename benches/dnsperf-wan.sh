#!/usr/bin/env bash
# DNS names of another datacenter, side by side: two single-server
# datacenters federated over WAN gossip on loopback, the same 100 services
# registered in each; dnsperf asks dc1's server for `svcN.service.consul`
# (its own answers), then for `svcN.service.dc2.consul` (forwarded to dc2
# and cached per question, kept fresh by one blocking call each). Counts
# the questions dc2 answered for dc1 from dc2's debug log (dc1 logs at
# warn). Loopback only; installs dnsperf (Debian) when missing.
#
#   benches/dnsperf-wan.sh [MUSTER_BINARY] [CLIENTS] [SECONDS]
set -euo pipefail

BIN=${1:-target/release/muster}
CLIENTS=${2:-8}
SECS=${3:-10}

if [ ! -x "$BIN" ]; then
    echo "error: $BIN not found: run 'cargo build --release' first" >&2
    exit 2
fi
if ! command -v dnsperf >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get install -y --no-install-recommends dnsperf >/dev/null
fi

DIR=$(mktemp -d)
cleanup() { kill "${DC1:-}" "${DC2:-}" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

start() { # name dc base-port [extra args...]
    local name=$1 dc=$2 p=$3; shift 3
    "$BIN" agent -server -bootstrap -node "$name" -datacenter "$dc" -data-dir "$DIR/$name" \
        -bind 127.0.0.1 -http-port $p -dns-port $((p + 1)) -server-port $((p + 2)) \
        -serf-lan-port $((p + 3)) -serf-wan-port $((p + 4)) "$@" \
        >"$DIR/$name.out" 2>"$DIR/$name.err" &
    for _ in $(seq 1 100); do grep -q "agent ready" "$DIR/$name.out" 2>/dev/null && break; sleep 0.1; done
}
start d2 dc2 18720 -log-level debug
DC2=$!
start d1 dc1 18700 -log-level warn -retry-join-wan 127.0.0.1:18724
DC1=$!
for _ in $(seq 1 100); do
    curl -sf 127.0.0.1:18700/v1/catalog/datacenters | grep -q dc2 && break; sleep 0.1
done

for i in $(seq 0 99); do
    ip="10.0.$((i / 250)).$((i % 250 + 1))"
    for port in 18700 18720; do
        curl -sf -X PUT "127.0.0.1:$port/v1/catalog/register" \
            -d "{\"Node\":\"n$i\",\"Address\":\"$ip\",\"Service\":{\"Service\":\"svc$i\",\"Port\":80}}" >/dev/null
    done
    echo "svc$i.service.consul A" >>"$DIR/local"
    echo "svc$i.service.dc2.consul A" >>"$DIR/remote"
done

run() { # port queries label
    dnsperf -s 127.0.0.1 -p "$1" -d "$2" -c "$CLIENTS" -l "$SECS" -q 500 2>&1 |
        awk -v who="$3" '/Queries per second/ {q=$4} /Queries lost/ {lost=$3} /Average Latency/ {l=$4*1000}
            END {printf "%-34s %10.0f q/s  %6.2f ms average  lost %s\n", who, q, l, lost}'
}
before=$(grep -c "transport=relay" "$DIR/d2.err" || true)
run 18701 "$DIR/local" "dc1 server, svcN.service.consul"
run 18701 "$DIR/remote" "dc1 server, svcN.service.dc2.consul"
after=$(grep -c "transport=relay" "$DIR/d2.err" || true)
echo "questions dc2 answered for dc1: $((after - before))"
