"""A long-running worker for `muster up`: the seed's "slave" process that works forever.

    muster up -n 4 -- python3 examples/ticker.py

Each copy prints a line every second with its worker number (MUSTER_WORKER) until it is
stopped; on SIGTERM it says goodbye and exits cleanly, which is what `muster stop` or Ctrl-C
sends first. `--crash-after N` makes it fail after N ticks, to watch muster restart it with
backoff.
"""

import os
import signal
import sys
import time


def main():
    worker = os.environ.get("MUSTER_WORKER", "?")
    crash_after = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[1] == "--crash-after" else None
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    ticks = 0
    while not stopping:
        ticks += 1
        print("worker %s: tick %d at %s" % (worker, ticks, time.strftime("%X")), flush=True)
        if crash_after is not None and ticks >= crash_after:
            print("worker %s: crashing on purpose" % worker, file=sys.stderr, flush=True)
            sys.exit(3)
        time.sleep(1)
    print("worker %s: asked to stop after %d ticks, bye" % (worker, ticks), flush=True)


if __name__ == "__main__":
    main()
