#!/usr/bin/env python3
"""Times commands side by side in rounds: each round runs every command once, in turn, so a
drift in the machine's speed (10-30% within a minute on a shared VM) hits them all alike —
hyperfine runs all of one command's runs before the next command's. One warm-up round is not
counted. Prints "name<TAB>median seconds" per command, in the order given.

Usage: rounds.py RUNS -n NAME COMMAND [-n NAME COMMAND ...]   (commands run with bash)"""

import statistics
import subprocess
import sys
import time


def main():
    runs = int(sys.argv[1])
    args = sys.argv[2:]
    if runs < 1 or len(args) % 3 or any(flag != "-n" for flag in args[0::3]):
        sys.exit(__doc__)
    commands = list(zip(args[1::3], args[2::3]))
    times = {name: [] for name, _ in commands}
    for round_number in range(runs + 1):
        for name, command in commands:
            start = time.perf_counter()
            subprocess.run(["bash", "-c", command], check=True, stdout=subprocess.DEVNULL)
            if round_number > 0:
                times[name].append(time.perf_counter() - start)
    for name, _ in commands:
        print(f"{name}\t{statistics.median(times[name]):.4f}")


if __name__ == "__main__":
    main()
