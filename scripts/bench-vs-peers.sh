#!/usr/bin/env bash
# muster run against its peers — xargs -P, GNU parallel, rust-parallel — and the raw spawn
# floor, side by side in one run on this machine. Prints a table of medians and ratios; then
# persistent workers against Python's pools and the pipe floor (scripts/bench-persistent.sh).
# Commands are timed in interleaved rounds (scripts/rounds.py). Installs GNU parallel and
# rust-parallel when missing. Not run by CI.
#
# Usage: scripts/bench-vs-peers.sh [RUNS]      (default 5 runs per command)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need parallel; then
  apt-get update -qq && apt-get install -y -qq parallel >/dev/null
fi
need rust-parallel || cargo install rust-parallel --locked --quiet
cargo build --release --quiet -p muster-cli
gcc -O2 -o "$work/spawn-floor" scripts/spawn-floor.c
gcc -O2 -o "$work/peak-rss" scripts/peak-rss.c
peak_rss=$work/peak-rss
muster=$PWD/target/release/muster
floor=$work/spawn-floor

bench() { # name, then -n NAME COMMAND ...: interleaved rounds (scripts/rounds.py), medians
  local name=$1; shift
  python3 scripts/rounds.py "$runs" "$@" > "$work/$name.tsv"
  sed 's/^/   median  /' "$work/$name.tsv"
}

echo "== 1. dispatch: 5,000 x /bin/true at -j2"
seq 5000 > "$work/in5k"
bench true \
  -n floor "$floor 5000 2 true" \
  -n muster "$muster run -j2 true < $work/in5k" \
  -n xargs "xargs -P2 -n1 true < $work/in5k" \
  -n rust-parallel "rust-parallel -j2 true < $work/in5k" \
  -n gnu-parallel "parallel -j2 true < $work/in5k"

echo "== 2. latency: 1,000 x sleep 0.05 at -j100 (ideal 0.5 s)"
seq 1000 | sed 's/.*/0.05/' > "$work/sleeps"
bench sleep \
  -n muster "$muster run -j100 sleep < $work/sleeps" \
  -n xargs "xargs -P100 -n1 sleep < $work/sleeps" \
  -n rust-parallel "rust-parallel -j100 sleep < $work/sleeps" \
  -n gnu-parallel "parallel -j100 sleep < $work/sleeps"

echo "== 3. CPU-bound: 16 x a 0.2 s busy loop at -j2 (parallel efficiency)"
cat > "$work/spin.sh" <<'SPIN'
i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done
SPIN
one=$("$peak_rss" "sh $work/spin.sh" | cut -f1)
seq 16 | sed "s|.*|$work/spin.sh|" > "$work/spins"
bench cpu \
  -n muster "$muster run -j2 sh < $work/spins" \
  -n xargs "xargs -P2 -n1 sh < $work/spins" \
  -n rust-parallel "rust-parallel -j2 sh < $work/spins" \
  -n gnu-parallel "parallel -j2 sh < $work/spins"

echo "== 4. output: 200 tasks x 2,000 lines (throughput; are lines kept whole and grouped?)"
cat > "$work/lines.sh" <<'LINES'
seq -f "task $1 line %g ......................................................" 2000
LINES
seq 200 > "$work/in200"
bench output \
  -n muster "$muster run -j2 sh $work/lines.sh < $work/in200 > /dev/null" \
  -n xargs "xargs -P2 -n1 sh $work/lines.sh < $work/in200 > /dev/null" \
  -n rust-parallel "rust-parallel -j2 sh $work/lines.sh < $work/in200 > /dev/null" \
  -n gnu-parallel "parallel -j2 sh $work/lines.sh < $work/in200 > /dev/null"
bytes=$(sh "$work/lines.sh" 1 | wc -c)
grouping() { # runs the command, counts task switches in its output (199 = perfectly grouped)
  bash -c "$1" < "$work/in200" | awk '{ if ($2 != last) { n++; last = $2 } } END { print n - 1 }'
}
declare -A switches
switches[muster]=$(grouping "$muster run -j2 sh $work/lines.sh")
switches[xargs]=$(grouping "xargs -P2 -n1 sh $work/lines.sh")
switches[rust-parallel]=$(grouping "rust-parallel -j2 sh $work/lines.sh")
switches[gnu-parallel]=$(grouping "parallel -j2 sh $work/lines.sh")

echo "== 5. memory: peak RSS reading input lines (commands printed, not run)"
# Peak RSS in kB (scripts/peak-rss.c: a fresh machine has no /usr/bin/time).
rss() { timeout 300 "$peak_rss" "$1" | awk -F'\t' '{ printf "%d\n", $2 * 1024 }' || echo 0; }
seq 100000 > "$work/in100k"; seq 1000000 > "$work/in1m"
rss_muster_100k=$(rss "$muster run --dry-run echo < $work/in100k")
rss_muster_1m=$(rss "$muster run --dry-run echo < $work/in1m")
# GNU parallel needs minutes even for 100k lines (--bar --dry-run did not finish in 6 min);
# 10k lines show its shape.
seq 10000 > "$work/in10k"
rss_gnu_1m=$(rss "parallel --dry-run echo < $work/in10k")
rss_gnu_bar_1m=$(rss "parallel --bar --dry-run echo < $work/in10k")

echo "== 6. scale: 10,000 x sleep 2 at -j10000 (ideal 2 s): wall time and peak RSS"
seq 10000 | sed 's/.*/2/' > "$work/sleeps10k"
scale_muster=$("$peak_rss" "$muster run -j10000 sleep < $work/sleeps10k")
scale_xargs=$("$peak_rss" "xargs -P10000 -n1 sleep < $work/sleeps10k")
scale_rust=$("$peak_rss" "rust-parallel -j10000 sleep < $work/sleeps10k")
printf '  %-14s %s\n' muster "$scale_muster" xargs "$scale_xargs" rust-parallel "$scale_rust" | tr '\t' ' '
echo "  (seconds, then peak RSS in MB of the largest process: muster's own, or a task's if larger)"

python3 - "$work" "$one" "$bytes" "${switches[muster]}" "${switches[xargs]}" "${switches[rust-parallel]}" "${switches[gnu-parallel]}" \
  "$rss_muster_100k" "$rss_muster_1m" "$rss_gnu_1m" "$rss_gnu_bar_1m" <<'PY'
import sys
work, one, line_bytes = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
sw = dict(zip(["muster", "xargs", "rust-parallel", "gnu-parallel"], sys.argv[4:8]))
rss = [int(x) / 1024 for x in sys.argv[8:12]]
def load(name):
    return dict(line.rstrip("\n").split("\t") for line in open(f"{work}/{name}.tsv"))
def table(title, name, base, unit=lambda t: f"{t:.3f} s", extra=lambda k, t: ""):
    rows = {k: float(v) for k, v in load(name).items()}
    print(f"\n{title}")
    for k, t in rows.items():
        print(f"  {k:14} {unit(t):>14}   {t / base(rows):5.2f}x  {extra(k, t)}")
table("1. 5,000 x true, -j2 (ratio to the posix_spawn floor)", "true", lambda r: r["floor"],
      extra=lambda k, t: f"{t / 5000 * 1000:.3f} ms/task")
table("2. 1,000 x sleep 0.05, -j100 (ratio to the ideal 0.5 s)", "sleep", lambda r: 0.5)
table(f"3. 16 x {one:.2f} s of CPU, -j2 (ratio to ideal {16 * one / 2:.2f} s)", "cpu", lambda r: 16 * one / 2,
      extra=lambda k, t: f"efficiency {16 * one / 2 / t * 100:.0f}%")
mb = 200 * line_bytes / 1e6
table(f"4. 200 x 2,000 lines ({mb:.0f} MB) to /dev/null (ratio to muster)", "output", lambda r: r["muster"],
      extra=lambda k, t: f"{mb / t:6.1f} MB/s, task switches in output {sw[k]} (199 = grouped)")
print("\n5. peak RSS, lines read and printed as commands (--dry-run)")
print(f"  muster 100k lines {rss[0]:7.1f} MB,  1M lines {rss[1]:7.1f} MB")
print(f"  GNU parallel 10k lines {rss[2]:7.1f} MB,  with --bar {rss[3]:7.1f} MB")
PY

echo
echo "== 7. persistent workers: square a number, 100,000 tasks, 2 workers"
scripts/bench-persistent.sh 100000 "$runs"
