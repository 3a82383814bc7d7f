/* The raw floor for running a command N times, J at a time: posix_spawn + waitpid, nothing
 * else (no pipes, no output handling). Each run gets its number as its last argument, as
 * `muster run` and `xargs -n1` give each task its input: the same argv, the same work in the
 * command (coreutils' `true` with an argument sets up its locale; without one it does not, and
 * takes 40% less CPU). Built and run by scripts/bench-vs-peers.sh.
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
    int fixed = argc - 3;
    char **args = calloc(fixed + 2, sizeof *args);
    char number[32];
    if (!args) return 1;
    for (int i = 0; i < fixed; i++) args[i] = argv[3 + i];
    args[fixed] = number;
    while (started < n || running > 0) {
        while (running < jobs && started < n) {
            pid_t pid;
            snprintf(number, sizeof number, "%ld", started + 1);
            if (posix_spawnp(&pid, argv[3], NULL, NULL, args, environ) != 0) {
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
