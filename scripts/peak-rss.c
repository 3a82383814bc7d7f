/* Runs a shell command and prints its wall time and the peak RSS of its largest process:
 * "SECONDS<TAB>MEGABYTES". A fresh machine has no /usr/bin/time, and a Python wrapper's own
 * image (~14 MB) would count as the child's peak (ru_maxrss keeps the pre-exec high-water
 * mark), so this is C and small. Built and run by scripts/bench-vs-peers.sh.
 * Usage: peak-rss 'COMMAND' */
#include <fcntl.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: peak-rss 'COMMAND'\n");
        return 2;
    }
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        /* The command's own output is not what is measured. */
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execl("/bin/bash", "bash", "-c", argv[1], (char *)NULL);
        perror("exec bash");
        _exit(127);
    }
    int status;
    struct rusage usage;
    if (wait4(pid, &status, 0, &usage) < 0) {
        perror("wait4");
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    double wall = (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
    printf("%.3f\t%.1f\n", wall, usage.ru_maxrss / 1024.0);
    return 0;
}
