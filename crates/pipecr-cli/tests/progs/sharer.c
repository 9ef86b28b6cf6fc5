/* A parent and a child that share its address space ("vm", clone with CLONE_VM; "sighand",
 * with CLONE_VM | CLONE_SIGHAND as vfork-like runtimes do), or a
 * child and a sibling that share the child's descriptor table ("sibling": the child
 * clones with CLONE_FILES | CLONE_PARENT, so the parent does not share it): what restore
 * cannot give back shared. Prints "ready\n" once every process runs, then all wait until
 * killed. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char stack[64 * 1024] __attribute__((aligned(16)));
static char stack2[64 * 1024] __attribute__((aligned(16)));
static int pipefd[2];

static int sibling(void *arg) {
    (void)arg;
    char c = 'y';
    if (write(pipefd[1], &c, 1) != 1) _exit(2);
    for (;;) pause();
    return 0;
}

static int child(void *arg) {
    if (arg && clone(sibling, stack2 + sizeof stack2, CLONE_FILES | CLONE_PARENT | SIGCHLD,
                     NULL) < 0)
        _exit(2);
    char c = 'x';
    if (write(pipefd[1], &c, 1) != 1) _exit(2);
    for (;;) pause();
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int flags = SIGCHLD;
    int sib = strcmp(argv[1], "sibling") == 0;
    if (strcmp(argv[1], "vm") == 0) flags |= CLONE_VM;
    else if (strcmp(argv[1], "sighand") == 0) flags |= CLONE_VM | CLONE_SIGHAND;
    else if (!sib) return 2;
    if (pipe(pipefd) != 0) return 2;
    if (clone(child, stack + sizeof stack, flags, sib ? "" : NULL) < 0) {
        perror("clone");
        return 2;
    }
    char c;
    for (int i = 0; i < 1 + sib; i++)
        if (read(pipefd[0], &c, 1) != 1) return 2;
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
