/* A parent and a child that share its descriptor table ("files", clone with
 * CLONE_FILES) or its address space ("vm", clone with CLONE_VM): what restore cannot give
 * back shared. Prints "ready\n" once the child runs, then both wait until killed. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char stack[64 * 1024] __attribute__((aligned(16)));
static int pipefd[2];

static int child(void *arg) {
    (void)arg;
    char c = 'x';
    if (write(pipefd[1], &c, 1) != 1) _exit(2);
    for (;;) pause();
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int flags = SIGCHLD;
    if (strcmp(argv[1], "files") == 0) flags |= CLONE_FILES;
    else if (strcmp(argv[1], "vm") == 0) flags |= CLONE_VM;
    else return 2;
    if (pipe(pipefd) != 0) return 2;
    if (clone(child, stack + sizeof stack, flags, NULL) < 0) { perror("clone"); return 2; }
    char c;
    if (read(pipefd[0], &c, 1) != 1) return 2;
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
