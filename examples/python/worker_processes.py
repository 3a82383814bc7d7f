"""The seed's worker processes, on muster: a master starts workers that run until told to
stop, and stops them properly instead of by Ctrl-C.

    python examples/python/worker_processes.py [SECONDS]

The seed started four `multiprocessing.Process(target=Slave)` looping for ever, and the only
way out was Ctrl-C. With multiprocessing, a `kill -9` of the master (or its OOM kill) leaves
the four loops running, orphaned, for good. Here the four loops are tasks of a 4-worker pool:
the master lets them run SECONDS, then `terminate()` stops every worker; Ctrl-C raises
KeyboardInterrupt in the master and stops them too; and `kill -9` of the master leaves none
behind (muster's watchdog stops their process groups).
"""

import datetime
import os
import sys
import time

import muster


def slave(number):
    """Runs and prints the time, once a second, until its worker is stopped."""
    while True:
        print("Slave process %d (pid %d), calculation done on... current time: %s"
              % (number, os.getpid(), datetime.datetime.now().time()), flush=True)
        time.sleep(1)


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5
    print("Entered main...", flush=True)
    with muster.Pool(4) as pool:
        for number in [1, 2, 3, 4]:
            pool.apply_async(slave, (number,))
        time.sleep(seconds)
        pool.terminate()  # the proper stop: every worker, now, nothing left running
    print("All slaves stopped.", flush=True)
