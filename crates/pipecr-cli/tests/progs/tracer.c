#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>
/* argv: "child" or a PID. Traces (PTRACE_SEIZE) a child of its own, or the process PID,
   prints "tracing PID" on stdout (flushed), then waits until killed. */
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    pid_t target;
    if (argv[1][0] == 'c') {
        target = fork();
        if (target < 0) return 2;
        if (target == 0) {
            for (;;) pause();
        }
    } else {
        target = atoi(argv[1]);
    }
    if (ptrace(PTRACE_SEIZE, target, 0, 0)) {
        perror("PTRACE_SEIZE");
        return 3;
    }
    printf("tracing %d\n", target);
    fflush(stdout);
    for (;;) pause();
}
