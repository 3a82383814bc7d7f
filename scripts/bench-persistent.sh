#!/usr/bin/env bash
# Persistent workers against Python's process pools, spawn-per-task and the raw pipe floor, on
# the same tiny work (square a number) with 2 workers, side by side in one run. Medians of
# RUNS rounds; each round runs every command once, so a drift in the machine's speed (10-30%
# within a minute on a shared VM) hits them all alike. Not run by CI.
#
# Usage: scripts/bench-persistent.sh [N] [RUNS]   (default 100000 tasks, 5 runs; spawn-per-task
#                                                  runs N/100 tasks)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
runs=${2:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet -p muster-cli
gcc -O2 -o "$work/pipe-floor" scripts/pipe-floor.c
muster=$PWD/target/release/muster
# The interpreter itself, not a version-manager shim (pyenv's adds ~60 ms per start).
python=$(python3 -c 'import sys; print(sys.executable)')
seq "$n" > "$work/in"
seq $((n / 100)) > "$work/in-spawn"

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
rate() { # tasks, command: runs it once, prints the rate in tasks/s
  local start end
  start=$(date +%s.%N); bash -c "$2" > /dev/null; end=$(date +%s.%N)
  awk -v n="$1" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f\n", n / (e - s) }'
}

for _ in $(seq "$runs"); do
  "$work/pipe-floor" "$n" 2 1 >> "$work/floor1"
  "$work/pipe-floor" "$n" 2 256 >> "$work/floor_wide"
  rate "$n" "$muster run --persistent -j 2 $work/pipe-floor --worker < $work/in" >> "$work/muster_c"
  rate "$n" "$muster run --persistent -j 2 $python examples/square_worker.py < $work/in" >> "$work/muster_py"
  rate $((n / 100)) "$muster run -j 2 $python -c 'import sys; print(int(sys.argv[1]) ** 2)' < $work/in-spawn" >> "$work/spawn"
  "$python" scripts/python_pools.py "$n" >> "$work/pools"
done
floor1=$(median < "$work/floor1")
floor_wide=$(median < "$work/floor_wide")
muster_c=$(median < "$work/muster_c")
muster_py=$(median < "$work/muster_py")
spawn=$(median < "$work/spawn")
pool_imap=$(awk -F'\t' '$1 == "pool_imap" { print $2 }' "$work/pools" | median)
pool_chunked=$(awk -F'\t' '$1 == "pool_imap_chunked" { print $2 }' "$work/pools" | median)
executor=$(awk -F'\t' '$1 == "process_pool_executor" { print $2 }' "$work/pools" | median)

printf 'square a number, %d tasks, 2 workers, median of %d runs (tasks/s)\n' "$n" "$runs"
row() { printf '  %-52s %10s\n' "$1" "$2"; }
row "floor: C master + C workers, 1 in flight" "$floor1"
row "floor: C master + C workers, 256 in flight" "$floor_wide"
row "muster run --persistent, C worker" "$muster_c"
row "muster run --persistent, Python worker" "$muster_py"
row "multiprocessing.Pool(2).imap(chunksize=1)" "$pool_imap"
row "multiprocessing.Pool(2).imap(chunksize=1000)" "$pool_chunked"
row "ProcessPoolExecutor(2).map" "$executor"
row "muster run, a python3 per task" "$spawn"
awk -v f="$floor_wide" -v c="$muster_c" -v p="$muster_py" -v i="$pool_imap" -v k="$pool_chunked" -v e="$executor" -v s="$spawn" 'BEGIN {
  printf "  persistent (Python) / Pool.imap = %.1fx, / Pool.imap(chunksize=1000) = %.2fx, / ProcessPoolExecutor = %.0fx, / spawn-per-task = %.0fx\n", p / i, p / k, p / e, p / s
  printf "  muster with a C worker runs at %.2f of the 256-in-flight floor\n", c / f }'
