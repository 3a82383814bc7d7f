"""The seed's producer/consumer, on muster: a producer yields 10 random numbers, consumers
take them from a bounded queue and store them, the master prints the sum and the time.

    python examples/python/producer_consumer.py [COUNT]

The seed used a queue.Queue(maxsize=10), a stop event, a ThreadPoolExecutor of two, and a
one-slot queue holding the running sum; its consumer could wait for ever on `queue.get()` once
the producer had set the event with the queue empty. Here the producer is a generator, read
lazily (muster keeps a bounded number of numbers in flight: the bounded queue), the
consumers are two worker processes, the end of the generator is the stop event, and the sum
is the master's. A consumer killed mid-way costs one number's retry, not the run.
"""

import os
import random
import sys
import time

import muster


def next_number(count):
    """Pretend we're getting numbers from the network."""
    for _ in range(count):
        yield random.randint(1, 11)


def consumer(message):
    """Pretend we're saving a number in the database."""
    return message


if __name__ == "__main__":
    started = time.time()
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    numbers = list(next_number(count))
    with muster.Pool(2, retries=1) as pool:
        total = sum(pool.imap_unordered(consumer, iter(numbers)))
    assert total == sum(numbers)
    print("the sum is :" + str(total))
    print("Program is done!")
    print("Execution time in seconds: " + str(time.time() - started))
