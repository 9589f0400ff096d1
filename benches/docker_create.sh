#!/usr/bin/env bash
# Create → online latency through molecule-server on the local Docker engine, against a plain
# `docker run` of the same image on the same machine (time until the container's agent answers
# HTTP). A benchmark, not a test: it prints N samples, the median and p90 of each, and the ratio.
#
#   cargo build -p molecule-server && cargo xtask image
#   benches/docker_create.sh [N]          # N runs of each (default 10)
#
# Environment: SERVER (the binary; default target/debug/molecule-server under
# $CARGO_TARGET_DIR or ./target), IMAGE (default molecule-echo-agent:dev).
set -euo pipefail

N=${1:-10}
IMAGE=${IMAGE:-molecule-echo-agent:dev}
NETWORK=molecule-rs-bench-net
ADMIN=bench-admin-token
SERVER=${SERVER:-${CARGO_TARGET_DIR:-target}/debug/molecule-server}
[ -x "$SERVER" ] || { echo "no server binary at $SERVER: cargo build -p molecule-server" >&2; exit 1; }
docker image inspect "$IMAGE" >/dev/null || { echo "no image $IMAGE: cargo xtask image" >&2; exit 1; }

now_ms() { date +%s%3N; }
# Stats of the numbers on stdin: "median p90" (nearest rank).
stats() { sort -n | awk '{a[NR]=$1} END {m=a[int((NR+1)/2)]; i=int(NR*0.9+0.999); if(i<1)i=1; print m, a[i]}'; }

docker network inspect "$NETWORK" >/dev/null 2>&1 || docker network create "$NETWORK" >/dev/null
GATEWAY=$(docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}} {{end}}' "$NETWORK" | awk '{print $1}')

work=$(mktemp -d)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    docker ps -aq --filter label=molecule.bench=1 | xargs -r docker rm -f >/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# 1. Plain `docker run`: start → the agent answers GET /health on its published port.
: >"$work/plain"
for i in $(seq "$N"); do
    t0=$(now_ms)
    cid=$(docker run -d --rm --label molecule.bench=1 --network "$NETWORK" -p 127.0.0.1::8000 \
        -e WORKSPACE_ID="$(cat /proc/sys/kernel/random/uuid)" -e PLATFORM_URL=http://127.0.0.1:9 "$IMAGE")
    port=$(docker port "$cid" 8000/tcp | head -1 | sed 's/.*://')
    until curl -sf -o /dev/null "http://127.0.0.1:$port/health"; do :; done
    echo $(($(now_ms) - t0)) >>"$work/plain"
    docker rm -f "$cid" >/dev/null
done

# 2. Through the server: POST /workspaces → status online (the agent registered).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MOLECULE_HOST=$GATEWAY PORT=$port PLATFORM_URL="http://$GATEWAY:$port" ADMIN_TOKEN=$ADMIN \
    MOLECULE_DATA_DIR="$work/data" DATABASE_URL="sqlite://$work/bench.db" MOLECULE_BACKEND=docker \
    MOLECULE_WORKSPACE_IMAGE="$IMAGE" MOLECULE_DOCKER_NETWORK="$NETWORK" RUST_LOG=warn \
    "$SERVER" >"$work/server.log" 2>&1 &
server_pid=$!
base="http://$GATEWAY:$port"
for _ in $(seq 200); do curl -sf -o /dev/null "$base/health" && break; sleep 0.05; done
: >"$work/server"
for i in $(seq "$N"); do
    t0=$(now_ms)
    id=$(curl -sf -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' \
        -d "{\"name\":\"bench-$i\",\"tier\":2}" "$base/workspaces" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    until curl -sf -H "Authorization: Bearer $ADMIN" "$base/workspaces/$id" | grep -q '"status":"online"'; do :; done
    echo $(($(now_ms) - t0)) >>"$work/server"
    curl -sf -X DELETE -H "Authorization: Bearer $ADMIN" "$base/workspaces/$id" >/dev/null
done

read -r pm p90 < <(stats <"$work/plain")
read -r sm s90 < <(stats <"$work/server")
echo "docker run → agent answers (ms): $(tr '\n' ' ' <"$work/plain")"
echo "server create → online (ms):     $(tr '\n' ' ' <"$work/server")"
printf 'plain docker run: median %d ms, p90 %d ms\n' "$pm" "$p90"
printf 'through server:   median %d ms, p90 %d ms\n' "$sm" "$s90"
awk -v a="$sm" -v b="$pm" -v c="$s90" -v d="$p90" \
    'BEGIN {printf "ratio server/plain: median %.2f, p90 %.2f\n", a/b, c/d}'
