"""Runs a shell command and prints its wall time and the peak RSS of its largest process.

Usage: python3 scripts/peak_rss.py 'COMMAND'   ->   "SECONDS<TAB>MEGABYTES"
Needs only Python (a fresh machine has no /usr/bin/time). The command runs through bash, so
the figure is the largest of bash and everything it waited for (muster and its tasks).
"""
import resource
import subprocess
import sys
import time

start = time.monotonic()
subprocess.run(["bash", "-c", sys.argv[1]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
wall = time.monotonic() - start
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"{wall:.3f}\t{peak_kb / 1024:.1f}")
