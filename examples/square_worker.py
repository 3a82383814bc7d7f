"""A persistent muster worker: reads one number per line on stdin, writes its square.

    seq 100000 | muster run --persistent -j 2 python3 examples/square_worker.py

muster keeps the interpreters alive and streams inputs through them, so each task costs a
share of a pipe round trip instead of a Python start-up — and two interpreters use two cores,
GIL or not. The protocol: exactly one result line per input line, in order; exit at end of
input. muster keeps many tasks in flight, so one read brings a batch of them: answer all of
them, then flush once, before reading again (a flush per line costs a write per task).
"""

import os
import sys


def main():
    out = sys.stdout.buffer
    rest = b""
    # What the pipe holds now, without waiting for more; b"" at the end of input.
    while chunk := os.read(0, 1 << 16):
        *lines, rest = (rest + chunk).split(b"\n")
        out.write(b"".join(b"%d\n" % (int(line) ** 2) for line in lines))
        # Before the next read waits: every task read is answered.
        out.flush()
    if rest:
        out.write(b"%d\n" % (int(rest) ** 2))
        out.flush()


if __name__ == "__main__":
    main()
