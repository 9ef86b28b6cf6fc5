/* A child and a sibling that share the child's descriptor table ("sibling": the child
 * clones with CLONE_FILES | CLONE_PARENT, so the parent does not share it) or its
 * address space ("vmsibling": CLONE_VM | CLONE_PARENT): what restore cannot give back
 * shared (a process is given its parent's). "vfork": a parent waiting in vfork for a
 * child that neither execs nor exits, which no tracer can stop. Prints "ready\n" once every process runs, then all wait until
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
    if (arg && clone(sibling, stack2 + sizeof stack2, *(int *)arg | CLONE_PARENT | SIGCHLD,
                     NULL) < 0)
        _exit(2);
    char c = 'x';
    if (write(pipefd[1], &c, 1) != 1) _exit(2);
    for (;;) pause();
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    static int share;
    if (strcmp(argv[1], "vfork") == 0) {
        /* The child says ready (the parent waits in vfork until it execs or exits). */
        if (vfork() == 0) {
            if (write(1, "ready\n", 6) != 6) _exit(2);
            for (;;) pause();
        }
        return 0;
    }
    if (strcmp(argv[1], "sibling") == 0) share = CLONE_FILES;
    else if (strcmp(argv[1], "vmsibling") == 0) share = CLONE_VM;
    else return 2;
    int sib = 1;
    if (pipe(pipefd) != 0) return 2;
    if (clone(child, stack + sizeof stack, SIGCHLD, &share) < 0) {
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
