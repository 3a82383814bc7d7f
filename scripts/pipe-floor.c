/* The raw pipe round-trip floor for persistent workers: the least a master can pay per task.
 *
 *   pipe-floor TASKS WORKERS WINDOW       master and workers in C, one poll loop
 *   pipe-floor --worker                    just the worker: squares one number per line
 *
 * The master forks WORKERS copies of the worker, keeps up to WINDOW numbers in flight per
 * worker (one write per batch), and reads the squares back; it prints tasks per second.
 * WINDOW 1 is a strict round trip per task; 16 is what muster --persistent keeps by default.
 * The worker writes one reply per line, as a line-flushing script would.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int worker(void) {
    char in[1 << 16], out[64];
    size_t have = 0;
    for (;;) {
        ssize_t n = read(0, in + have, sizeof in - have);
        if (n <= 0) return 0;
        have += (size_t)n;
        size_t start = 0;
        for (size_t i = 0; i < have; i++) {
            if (in[i] != '\n') continue;
            in[i] = 0;
            long long x = atoll(in + start);
            int len = snprintf(out, sizeof out, "%lld\n", x * x);
            if (write(1, out, (size_t)len) != len) return 1;
            start = i + 1;
        }
        memmove(in, in + start, have - start);
        have -= start;
    }
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--worker") == 0) return worker();
    if (argc != 4) {
        fprintf(stderr, "usage: %s TASKS WORKERS WINDOW | --worker\n", argv[0]);
        return 2;
    }
    long tasks = atol(argv[1]);
    int workers = atoi(argv[2]), window = atoi(argv[3]);
    int to[64], from[64];
    long in_flight[64] = {0};
    if (workers < 1 || workers > 64 || window < 1) return 2;
    for (int w = 0; w < workers; w++) {
        int a[2], b[2];
        if (pipe(a) || pipe(b)) return 1;
        if (fork() == 0) {
            dup2(a[0], 0);
            dup2(b[1], 1);
            close(a[0]); close(a[1]); close(b[0]); close(b[1]);
            execl("/proc/self/exe", argv[0], "--worker", (char *)0);
            _exit(127);
        }
        close(a[0]);
        close(b[1]);
        to[w] = a[1];
        from[w] = b[0];
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long sent = 0, answered = 0;
    char buf[1 << 16];
    struct pollfd fds[64];
    while (answered < tasks) {
        for (int w = 0; w < workers; w++) {
            /* Refill the window in one write once half of it is answered. */
            if (in_flight[w] > window / 2 || sent >= tasks) continue;
            int len = 0;
            while (in_flight[w] < window && sent < tasks && len < (int)sizeof buf - 32) {
                len += snprintf(buf + len, sizeof buf - (size_t)len, "%ld\n", ++sent);
                in_flight[w]++;
            }
            if (write(to[w], buf, (size_t)len) != len) return 1;
        }
        for (int w = 0; w < workers; w++) fds[w] = (struct pollfd){.fd = from[w], .events = POLLIN};
        if (poll(fds, (nfds_t)workers, -1) < 0) return 1;
        for (int w = 0; w < workers; w++) {
            if (!(fds[w].revents & POLLIN)) continue;
            ssize_t n = read(from[w], buf, sizeof buf);
            if (n <= 0) return 1;
            for (ssize_t i = 0; i < n; i++)
                if (buf[i] == '\n') { in_flight[w]--; answered++; }
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (int w = 0; w < workers; w++) close(to[w]);
    while (wait(NULL) > 0) {}
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%.0f\n", (double)tasks / secs);
    return 0;
}
