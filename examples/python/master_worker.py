"""The seed's master and worker, on muster: a master feeds a worker through a queue until it
says 'quit' — here the worker is a separate interpreter, and the queue is muster's.

    python examples/python/master_worker.py [SECONDS]

The seed ran its worker as a thread reading a queue.Queue until the string 'quit'. Were that
worker a process (multiprocessing.Process + Queue) and killed — an OOM kill, a segfault in a C
extension — the master's `q.put` goes on and its final `join()` waits for ever on nothing. On
muster, each message is a task for the worker; 'quit' is `close()` then `join()` (the
worker's stdin closes and it leaves on its own accord), and a killed worker is replaced, its
message delivered again (`retries=1`). Try it: `pkill -9 -f muster._worker` while it runs.
"""

import datetime
import os
import sys
import time

import muster


def worker(message):
    """The worker's part: say what it received, and from which process."""
    return "I'm the worker (pid %d), received something at %s!!" % (os.getpid(), message)


def master(seconds):
    pool = muster.Pool(1, retries=1)
    pending = []
    started = time.time()
    while time.time() - started < seconds:
        # A message a second, as the seed's producer: the time, as a string.
        stamp = datetime.datetime.now().strftime("%X")
        pending.append(pool.apply_async(worker, (stamp,), callback=print))
        time.sleep(1)
    pool.close()  # 'quit': no more messages; the worker finishes what it has, then ends
    pool.join()
    for result in pending:
        result.get()  # raises if a message was lost twice over
    print("Bye byes!")


if __name__ == "__main__":
    master(float(sys.argv[1]) if len(sys.argv) > 1 else 5)
