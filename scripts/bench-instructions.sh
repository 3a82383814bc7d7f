#!/usr/bin/env bash
# Instructions muster executes per task on its fastest path — persistent workers answering as
# fast as a pipe allows (the C pipe floor's worker, 2 workers) — counted by valgrind's
# callgrind, where each muster thread is counted and the workers are not. Unlike a time, the
# count barely moves with the machine's load (0.5 % between runs on a shared 2-CPU VM, where
# times move 30 %), so a change of a few percent in the engine's per-task work shows. It is
# user-space work only: system calls and context switches are not in it (time them with
# scripts/bench-persistent.sh). Not run by CI.
#
# Usage: scripts/bench-instructions.sh [N] [BINARY...]   (default 100000 tasks; the binaries
#        default to this tree's release build: give an older build too to compare, side by side)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
shift || true
if ! command -v valgrind > /dev/null; then
  echo "valgrind is not installed (Debian: apt-get install valgrind)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ $# -eq 0 ]; then
  cargo build --release --quiet -p muster-cli
  set -- "$PWD/target/release/muster"
fi
gcc -O2 -o "$work/pipe-floor" scripts/pipe-floor.c
seq "$n" > "$work/in"
printf '%-40s %14s %10s\n' binary instructions per-task
for muster in "$@"; do
  valgrind --tool=callgrind --callgrind-out-file="$work/out" --trace-children=no \
    "$muster" run --persistent -j 2 "$work/pipe-floor" --worker < "$work/in" > "$work/answers" 2> "$work/err"
  if [ "$(wc -l < "$work/answers")" -ne "$n" ]; then
    echo "$muster: $(wc -l < "$work/answers") answers for $n tasks" >&2
    exit 1
  fi
  total=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/err")
  printf '%-40s %14s %10s\n' "$muster" "$total" $((total / n))
done
