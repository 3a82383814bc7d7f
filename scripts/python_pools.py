"""Python's own process pools on the same tiny task (square a number), for comparison with
muster --persistent (imap at chunksize 1, and 1000: what a tuned user writes).
Usage: python3 python_pools.py N   (ProcessPoolExecutor runs N/10).
Each rate is timed from creating the pool to its last result, start-up included, as muster's
are timed from its start to its exit."""

import concurrent.futures
import multiprocessing
import sys
import time


def square(x):
    return x * x


if __name__ == "__main__":
    n = int(sys.argv[1])
    start = time.time()
    with multiprocessing.Pool(2) as pool:
        sum(pool.imap(square, range(n), chunksize=1))
    pool_rate = n / (time.time() - start)
    start = time.time()
    with multiprocessing.Pool(2) as pool:
        sum(pool.imap(square, range(n), chunksize=1000))
    chunked_rate = n / (time.time() - start)
    start = time.time()
    with concurrent.futures.ProcessPoolExecutor(2) as executor:
        sum(executor.map(square, range(n // 10)))
    executor_rate = n / 10 / (time.time() - start)
    print("pool_imap\t%.0f" % pool_rate)
    print("pool_imap_chunked\t%.0f" % chunked_rate)
    print("process_pool_executor\t%.0f" % executor_rate)
