#!/usr/bin/env bash
# DNS throughput side by side: dnsperf against a muster server with 100
# registered services, then against dnsmasq serving the same 100 names as
# static records. Loopback only; installs dnsperf and dnsmasq (Debian) when
# missing.
#
#   benches/dnsperf.sh [MUSTER_BINARY] [CLIENTS] [SECONDS]
set -euo pipefail

BIN=${1:-target/release/muster}
CLIENTS=${2:-8}
SECS=${3:-10}
HTTP=18510 DNS=18610 MASQ=18620

if [ ! -x "$BIN" ]; then
    echo "error: $BIN not found: run 'cargo build --release' first" >&2
    exit 2
fi
for tool in dnsperf dnsmasq; do
    if ! command -v "$tool" >/dev/null; then
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        $SUDO apt-get install -y --no-install-recommends "$tool" >/dev/null
    fi
done

DIR=$(mktemp -d)
cleanup() { kill "${MUSTER_PID:-}" "${MASQ_PID:-}" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT

"$BIN" agent -dev -http-port $HTTP -dns-port $DNS -server-port 18310 \
    -serf-lan-port 18311 -serf-wan-port 18312 -log-level warn >"$DIR/out" 2>"$DIR/err" &
MUSTER_PID=$!
for _ in $(seq 1 100); do grep -q "agent ready" "$DIR/out" 2>/dev/null && break; sleep 0.1; done

MASQ_ARGS=()
for i in $(seq 0 99); do
    ip="10.0.$((i / 250)).$((i % 250 + 1))"
    curl -sf -X PUT "127.0.0.1:$HTTP/v1/catalog/register" \
        -d "{\"Node\":\"n$i\",\"Address\":\"$ip\",\"Service\":{\"Service\":\"svc$i\",\"Port\":80}}" >/dev/null
    MASQ_ARGS+=("--address=/svc$i.service.consul/$ip")
    echo "svc$i.service.consul A" >>"$DIR/queries"
done

run() {
    dnsperf -s 127.0.0.1 -p "$1" -d "$DIR/queries" -c "$CLIENTS" -l "$SECS" -q 500 2>&1 |
        awk -v who="$2" '/Queries per second/ {q=$4} /Average Latency/ {l=$4*1000} END {printf "%-8s %10.0f q/s  %6.2f ms average\n", who, q, l}'
}

run $DNS muster
kill $MUSTER_PID; wait $MUSTER_PID 2>/dev/null || true; MUSTER_PID=
dnsmasq --no-daemon --port $MASQ --listen-address 127.0.0.1 --bind-interfaces \
    --no-resolv --no-hosts "${MASQ_ARGS[@]}" >/dev/null 2>&1 &
MASQ_PID=$!
sleep 0.5
run $MASQ dnsmasq
