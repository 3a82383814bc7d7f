"""The Python seed's producer/consumer design, for benchmarking against the Rust twin.

Same structure as the seed: a producer puts random integers into queue.Queue(maxsize=10), a
consumer sums them through a second queue of size 1, both run in ThreadPoolExecutor(2), and a
threading.Event marks the end. Two changes keep the measurement honest: per-item logging is
off (it would dominate), and the producer puts a final None so the consumer cannot block
forever in get() after the event is set (a race the seed has).

Usage: python3 seed_producer_consumer.py N SEED
"""

import concurrent.futures
import queue
import random
import sys
import threading
import time


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    random.seed(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    start = time.time()

    def numbers():
        for _ in range(count):
            yield random.randint(1, 11)

    def producer(pipeline, n, event):
        for message in n:
            pipeline.put(message)
        event.set()
        pipeline.put(None)

    def consumer(pipeline, total, event):
        while True:
            message = pipeline.get()
            if message is None:
                break
            sum_n = total.get()
            total.put(sum_n + message)

    pipeline = queue.Queue(maxsize=10)
    total = queue.Queue(maxsize=1)
    total.put(0)
    event = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as executor:
        executor.submit(producer, pipeline, numbers(), event)
        executor.submit(consumer, pipeline, total, event)

    elapsed = time.time() - start
    print("sum: %d" % total.get())
    print("items: %d" % count)
    print("execution time: %.6f s" % elapsed)
    print("rate: %.0f items/s" % (count / elapsed))


if __name__ == "__main__":
    main()
