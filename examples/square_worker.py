"""A persistent muster worker: reads one number per line on stdin, writes its square.

    seq 100000 | muster run --persistent -j 2 python3 examples/square_worker.py

muster keeps the interpreters alive and streams inputs through them, so each task costs a
pipe round trip instead of a Python start-up — and two interpreters use two cores, GIL or not.
The protocol: exactly one result line per input line, in order; exit at end of input.
"""

import sys


def main():
    for line in sys.stdin:
        sys.stdout.write("%d\n" % (int(line) ** 2))
        # Flush per reply: muster keeps several tasks in flight, so this does not serialize.
        sys.stdout.flush()


if __name__ == "__main__":
    main()
