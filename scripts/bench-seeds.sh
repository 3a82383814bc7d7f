#!/usr/bin/env bash
# Runs the producer/consumer seed twin against the Python seed's design on the same N, side by
# side, several rounds, and prints the median rates and their ratio. Not run by CI.
#
# Usage: scripts/bench-seeds.sh [N] [ROUNDS]     (defaults: 1000000, 5)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
rounds=${2:-5}

cargo build --release --quiet --example producer_consumer
twin=target/release/examples/producer_consumer

rate() { awk '/^rate:/ {print $2}'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

rust_rates=() python_rates=()
for round in $(seq "$rounds"); do
  # Alternate the order so neither side always runs on a warmer machine.
  if (( round % 2 )); then
    rust_rates+=("$("$twin" --count "$n" --seed "$round" | rate)")
    python_rates+=("$(python3 scripts/seed_producer_consumer.py "$n" "$round" | rate)")
  else
    python_rates+=("$(python3 scripts/seed_producer_consumer.py "$n" "$round" | rate)")
    rust_rates+=("$("$twin" --count "$n" --seed "$round" | rate)")
  fi
done

rust=$(printf '%s\n' "${rust_rates[@]}" | median)
python=$(printf '%s\n' "${python_rates[@]}" | median)
printf 'producer/consumer, N=%s, capacity 10, 2 consumers, median of %s rounds\n' "$n" "$rounds"
printf '  %-36s %12.0f items/s\n' "muster twin (Pipeline, Rust)" "$rust"
printf '  %-36s %12.0f items/s\n' "Python seed (Queue(10), TPE(2))" "$python"
awk -v r="$rust" -v p="$python" 'BEGIN {printf "  ratio: muster is %.1fx the Python seed\n", r / p}'
