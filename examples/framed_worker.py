"""A persistent worker speaking framed records (`muster run --persistent --framed`): each
record on stdin is its length (4 bytes, little-endian) and then its bytes; each reply is
framed the same way on stdout, one per record, in order. Any bytes may be in a record.

    muster run --persistent --framed -k python3 examples/framed_worker.py 'got ' ::: a b

Replies with PREFIX (default empty) and the record. With a second argument WORD, after
answering the record WORD it writes a line of text where the next frame belongs (a protocol
break, for muster's tests).
"""

import struct
import sys


def main():
    prefix = sys.argv[1].encode() if len(sys.argv) > 1 else b""
    garble_after = sys.argv[2].encode() if len(sys.argv) > 2 else None
    read, write = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = read.read(4)
        if len(head) < 4:
            return
        record = read.read(struct.unpack("<I", head)[0])
        reply = prefix + record
        write.write(struct.pack("<I", len(reply)) + reply)
        if record == garble_after:
            write.write(b"hello world\n")
        write.flush()


if __name__ == "__main__":
    main()
