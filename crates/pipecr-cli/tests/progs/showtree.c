/* A 2-process tree for `pipecr show`: parent and child with a fixed descriptor layout.
 *
 * Inherited: fd 0 the read end of a pipe whose writer is outside the tree (the test),
 * fd 1 where "ready PARENT CHILD" goes, fd 2 anything (closed in the child).
 *
 *   parent fd 3   shared.txt (argv[1]), opened once before the fork: shared with the child
 *   parent fd 4   write end of pipe A, close-on-exec; 120 bytes written, none read
 *   parent fd 5   read end of packet-mode pipe B
 *   parent fd 6   write end of packet-mode pipe B; 2 packets of 4 and 10 bytes
 *   parent fd 8-11  both ends of two empty pipes D and E (so that open file ids reach
 *                 two digits)
 *   child  fd 3   shared.txt (the same open file as the parent's fd 3)
 *   child  fd 7   read end of pipe A, close-on-exec
 *
 * The child keeps nothing else. Both then sleep in pause() until killed.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(2);
}

/* Moves fd to number `to` (with O_CLOEXEC when asked) and closes the original. */
static void move_fd(int fd, int to, int cloexec) {
    if (fd == to) {
        if (fcntl(fd, F_SETFD, cloexec ? FD_CLOEXEC : 0) < 0)
            die("fcntl");
        return;
    }
    if (dup3(fd, to, cloexec ? O_CLOEXEC : 0) < 0)
        die("dup3");
    close(fd);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: showtree FILE\n");
        return 2;
    }
    /* Descriptors are first moved above 19, then to their fixed numbers. */
    int file = open(argv[1], O_RDWR | O_CREAT, 0600);
    int a[2], b[2], d[2], e[2], sync[2];
    if (file < 0)
        die("open");
    if (pipe2(a, O_CLOEXEC) < 0 || pipe2(b, O_DIRECT) < 0 || pipe2(sync, O_CLOEXEC) < 0)
        die("pipe2");
    if (pipe2(d, 0) < 0 || pipe2(e, 0) < 0)
        die("pipe2");
    int fds[] = {file, a[0], a[1], b[0], b[1], sync[0], sync[1], d[0], d[1], e[0], e[1]};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        int high = fcntl(fds[i], F_DUPFD_CLOEXEC, 20 + (int)i);
        if (high < 0)
            die("F_DUPFD");
        close(fds[i]);
        fds[i] = high;
    }
    file = fds[0];
    a[0] = fds[1];
    a[1] = fds[2];
    b[0] = fds[3];
    b[1] = fds[4];
    sync[0] = fds[5];
    sync[1] = fds[6];
    move_fd(fds[7], 8, 0);
    move_fd(fds[8], 9, 0);
    move_fd(fds[9], 10, 0);
    move_fd(fds[10], 11, 0);
    move_fd(file, 3, 0);
    move_fd(a[1], 4, 1);
    move_fd(b[0], 5, 0);
    move_fd(b[1], 6, 0);

    char pending[120];
    memset(pending, 'a', sizeof pending);
    if (write(4, pending, sizeof pending) != (ssize_t)sizeof pending)
        die("write A");
    if (write(6, "pkt1", 4) != 4 || write(6, "packet-two", 10) != 10)
        die("write B");

    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        move_fd(a[0], 7, 1);
        close(0);
        close(1);
        close(2);
        for (int fd = 4; fd <= 11; fd++)
            if (fd != 7)
                close(fd);
        close(sync[0]);
        if (write(sync[1], "c", 1) != 1)
            _exit(2);
        close(sync[1]);
        for (;;)
            pause();
    }
    close(a[0]);
    close(sync[1]);
    char c;
    if (read(sync[0], &c, 1) != 1)
        die("child did not start");
    close(sync[0]);
    printf("ready %d %d\n", (int)getpid(), (int)child);
    fflush(stdout);
    for (;;)
        pause();
}
