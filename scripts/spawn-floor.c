/* The raw floor for running a command N times, J at a time: posix_spawn + waitpid, nothing
 * else (no pipes, no output handling). Built and run by scripts/bench-vs-peers.sh.
 * Usage: spawn-floor N J COMMAND [ARG...] */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: spawn-floor N J COMMAND [ARG...]\n");
        return 2;
    }
    long n = atol(argv[1]), jobs = atol(argv[2]), started = 0, running = 0;
    while (started < n || running > 0) {
        while (running < jobs && started < n) {
            pid_t pid;
            if (posix_spawnp(&pid, argv[3], NULL, NULL, argv + 3, environ) != 0) {
                perror("posix_spawnp");
                return 1;
            }
            started++;
            running++;
        }
        int status;
        if (wait(&status) > 0) running--;
    }
    return 0;
}
