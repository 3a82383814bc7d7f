#!/usr/bin/env bash
# Trivial tasks through one Redis as worker processes are added, beside a local run of the
# same tasks and Redis's own XADD rate (redis-benchmark), all in one run on this machine.
# Each "host" is a separate `muster worker` process. Then the same with --persistent workers
# (`cat` as the worker program: one line in, one out) on PERSISTENT_TASKS tasks, and how long a
# frozen worker's task takes to be recovered by another worker (lease 2 s).
# Run as root where `ip netns` works, each worker "host" gets a network namespace of its own,
# reaching Redis over a veth pair (a real network path, not loopback); NETNS=0 turns that off.
# Usage: scripts/bench-scale.sh [TASKS] [MAX_WORKERS] [PERSISTENT_TASKS]
set -euo pipefail
cd "$(dirname "$0")/.."
tasks=${1:-2000}
max_workers=${2:-4}
persistent_tasks=${3:-100000}
cargo build --release -q -p muster-cli
muster=$PWD/target/release/muster
command -v redis-server >/dev/null || { echo "redis-server not installed (apt-get install redis-server)"; exit 1; }
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
workers=()
namespaces=()
redis_pid=""
cleanup() {
    kill "${workers[@]}" 2>/dev/null || true
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null
    wait 2>/dev/null || true
    for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT
# Host i's namespace and the address it reaches Redis at (10.231.i.1 on the host's side).
binds=(127.0.0.1)
if [ "${NETNS:-1}" = 1 ] && [ "$(id -u)" = 0 ] && ip netns add "muster-bench-$$-probe" 2>/dev/null; then
    ip netns del "muster-bench-$$-probe"
    for i in $(seq 1 "$max_workers"); do
        ns=muster-bench-$$-$i
        ip netns add "$ns"
        namespaces+=("$ns")
        ip link add "mbh$i-$$" type veth peer name "mbn$i-$$" 2>/dev/null || ip link add "mbh$i" type veth peer name "mbn$i"
        host_if=$(ip -o link show | grep -o "mbh$i[-0-9]*" | head -1)
        ns_if=$(ip -o link show | grep -o "mbn$i[-0-9]*" | head -1)
        ip link set "$ns_if" netns "$ns"
        ip addr add "10.231.$i.1/24" dev "$host_if"
        ip link set "$host_if" up
        ip netns exec "$ns" ip addr add "10.231.$i.2/24" dev "$ns_if"
        ip netns exec "$ns" ip link set "$ns_if" up
        ip netns exec "$ns" ip link set lo up
        binds+=("10.231.$i.1")
    done
    echo "== each worker host in its own network namespace, reaching Redis over a veth pair"
else
    echo "== worker hosts share this machine's loopback (network namespaces need root and ip netns)"
fi
# Runs a command as worker host $1 (in its namespace when there is one).
as_host() {
    local i=$1
    shift
    if [ ${#namespaces[@]} -gt 0 ]; then ip netns exec "muster-bench-$$-$i" "$@"; else "$@"; fi
}
host_url() { if [ ${#namespaces[@]} -gt 0 ]; then echo "redis://10.231.$1.1:$port"; else echo "$url"; fi; }
# Bound to loopback and the veth addresses only; protected mode would refuse the namespaces.
protected=yes
[ ${#namespaces[@]} -gt 0 ] && protected=no
redis-server --port "$port" --bind "${binds[@]}" --protected-mode "$protected" --save '' --appendonly yes --appendfsync everysec --dir "$dir" >/dev/null &
redis_pid=$!
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
url=redis://127.0.0.1:$port
now() { python3 -c 'import time; print(time.time())'; }
rate() { python3 -c "print(f'{$1/($3-$2):,.0f} tasks/s ({($3-$2)*1e3/$1:.3f} ms/task)')"; }

echo "== $tasks × true, $(nproc) cores"
start=$(now); seq "$tasks" | "$muster" run -j 4 --no-summary true; end=$(now)
echo "local muster run -j4:           $(rate "$tasks" "$start" "$end")"
for n in $(seq 1 "$max_workers"); do
    queue=bench$n
    workers=()
    for i in $(seq 1 "$n"); do
        as_host "$i" "$muster" worker --broker "$(host_url "$i")" --queue "$queue" -j 4 true 2>/dev/null &
        workers+=($!)
    done
    start=$(now); seq "$tasks" | timeout 600 "$muster" submit --broker "$url" --queue "$queue" --no-summary 2>/dev/null; end=$(now)
    echo "submit, $n worker(s) × -j4:     $(rate "$tasks" "$start" "$end")"
    "$muster" drain --broker "$url" --queue "$queue" 2>/dev/null
    wait "${workers[@]}" 2>/dev/null || true
done
echo "== $persistent_tasks × one line through \`cat\` as a persistent worker"
start=$(now); seq "$persistent_tasks" | "$muster" run --persistent -j 1 --no-summary cat >/dev/null; end=$(now)
echo "local muster run --persistent -j1: $(rate "$persistent_tasks" "$start" "$end")"
for n in $(seq 1 "$max_workers"); do
    queue=persistent$n
    workers=()
    for i in $(seq 1 "$n"); do
        as_host "$i" "$muster" worker --broker "$(host_url "$i")" --queue "$queue" -j 1 --persistent --window 256 cat 2>/dev/null &
        workers+=($!)
    done
    redis-cli -p "$port" config resetstat >/dev/null
    start=$(now); seq "$persistent_tasks" | timeout 600 "$muster" submit --broker "$url" --queue "$queue" --no-summary >/dev/null 2>&1; end=$(now)
    echo "submit, $n persistent worker(s) × -j1: $(rate "$persistent_tasks" "$start" "$end")"
    # Where Redis's own time went (a script's calls are counted in it and again on their own).
    redis-cli -p "$port" info commandstats | tr -d '\r' | awk -F'[:,=]' -v n="$persistent_tasks" '
        /^cmdstat_/ { sub("cmdstat_", "", $1); t[$1] = $5; total += $5 }
        END { line = "  Redis µs per task:"; for (c in t) if (t[c] / n >= 0.1) line = line sprintf(" %s %.1f", c, t[c] / n); print line }'
    "$muster" drain --broker "$url" --queue "$queue" 2>/dev/null
    wait "${workers[@]}" 2>/dev/null || true
done

echo "== recovery of a frozen worker's task (lease 2 s; the target is lease + 1 s)"
hang='if [ -e "$0.marker" ]; then echo ok; else touch "$0.marker"; exec sleep 30; fi'
"$muster" worker --broker "$url" --queue recover -j 1 --lease 2s sh -c "$hang" "$dir/task" 2>/dev/null &
frozen=$!
workers=("$frozen")
"$muster" submit --broker "$url" --queue recover ::: t >/dev/null 2>&1 &
submitter=$!
until [ -e "$dir/task.marker" ]; do sleep 0.01; done
kill -STOP "$frozen"; start=$(now)
"$muster" worker --broker "$url" --queue recover -j 1 --lease 2s sh -c "$hang" "$dir/task" 2>/dev/null &
workers+=($!)
wait "$submitter"; end=$(now)
python3 -c "print(f'frozen worker to result from another: {$end-$start:.2f} s')"
disown "$frozen"
kill -KILL "$frozen" 2>/dev/null || true
"$muster" drain --broker "$url" --queue recover 2>/dev/null

if command -v redis-benchmark >/dev/null; then
    echo "redis-benchmark XADD (1 client, no pipelining): $(redis-benchmark -p "$port" -n 20000 -c 1 -q XADD muster:bench '*' f v | tr '\r' '\n' | tail -1)"
    echo "redis-benchmark XADD (50 clients, pipeline 16): $(redis-benchmark -p "$port" -n 200000 -c 50 -P 16 -q XADD muster:bench '*' f v | tr '\r' '\n' | tail -1)"
fi
