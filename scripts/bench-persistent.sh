#!/usr/bin/env bash
# Persistent workers against Python's process pools and spawn-per-task, on the same tiny
# work (square a number) with 2 workers, side by side in one run. Not run by CI.
#
# Usage: scripts/bench-persistent.sh [N]      (default 100000; spawn-per-task runs N/100)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
cargo build --release --quiet -p muster-cli
muster=$PWD/target/release/muster
python=$(command -v python3)

rate() { # tasks, command...
  local tasks=$1; shift
  local start end
  start=$(date +%s.%N); "$@" > /dev/null; end=$(date +%s.%N)
  awk -v n="$tasks" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", n / (e - s) }'
}

persistent=$(rate "$n" sh -c "seq $n | $muster run --persistent -j 2 $python examples/square_worker.py")
spawn=$(rate $((n / 100)) sh -c "seq $((n / 100)) | $muster run -j 2 $python -c 'import sys; print(int(sys.argv[1]) ** 2)'")
eval "$(python3 scripts/python_pools.py "$n" | awk -F'\t' '{ printf "%s=%s\n", $1, $2 }')"

printf 'square a number, 2 workers (tasks/s)\n'
printf '  %-40s %10s\n' "muster run --persistent (Python worker)" "$persistent"
printf '  %-40s %10s\n' "multiprocessing.Pool.imap(chunksize=1)" "$pool_imap"
printf '  %-40s %10s\n' "ProcessPoolExecutor.map" "$process_pool_executor"
printf '  %-40s %10s\n' "muster run, a python3 per task" "$spawn"
awk -v p="$persistent" -v i="$pool_imap" -v s="$spawn" 'BEGIN {
  printf "  persistent / Pool.imap = %.1fx, persistent / spawn-per-task = %.0fx\n", p / i, p / s }'
