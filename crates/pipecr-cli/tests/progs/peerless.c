/* A parent and its child sharing pipe ends that came from pipe() (fds 10, 11) and from
 * pipe2(O_NONBLOCK) (12, 13), both with bytes in them, an end opened again through
 * /proc/self/fd (17, with O_LARGEFILE), the read end of a pipe whose writer was closed
 * with bytes left in it (14, as make's), the write end of a pipe whose reader was closed
 * (15), and the FIFO DIR/go opened read-write (16).
 *
 * Usage: peerless DIR. Each process writes DIR/before.PID ("fd F getfl O fdinfo O" for
 * fds 10-17), then the parent prints "ready\n" and both block reading one byte of go.
 * After it: DIR/after.PID with the same lines, and the parent adds what reading fd 14 to
 * end of file gave ("tail BYTES eof") and what writing to fd 15 gave ("write EPIPE",
 * SIGPIPE being blocked). The parent waits for the child and exits 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *dir;

static void place(int fd, int at) {
    if (fd == at) return;
    if (dup2(fd, at) != at) exit(2);
    close(fd);
}

static void report(const char *name) {
    char path[4096], line[256];
    snprintf(path, sizeof path, "%s/%s.%d", dir, name, (int)getpid());
    FILE *out = fopen(path, "w");
    if (!out) exit(2);
    for (int fd = 10; fd <= 17; fd++) {
        snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
        FILE *info = fopen(path, "r");
        if (!info) exit(2);
        char flags[64] = "?";
        while (fgets(line, sizeof line, info))
            if (sscanf(line, "flags: %63s", flags) == 1) break;
        fclose(info);
        fprintf(out, "fd %d getfl %o fdinfo %s\n", fd, fcntl(fd, F_GETFL), flags);
    }
    fclose(out);
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    dir = argv[1];
    sigset_t pipe_sig;
    sigemptyset(&pipe_sig);
    sigaddset(&pipe_sig, SIGPIPE);
    sigprocmask(SIG_BLOCK, &pipe_sig, NULL);

    int a[2], b[2], c[2], d[2], s[2];
    /* One at a time: a new pipe must not land on a number still to be filled. */
    if (pipe(a)) return 2;
    place(a[0], 10); place(a[1], 11);
    if (pipe2(b, O_NONBLOCK)) return 2;
    place(b[0], 12); place(b[1], 13);
    if (pipe(c)) return 2;
    place(c[0], 14);
    if (pipe(d)) return 2;
    place(d[1], 15);
    if (write(11, "aaaa", 4) != 4 || write(13, "bbbb", 4) != 4) return 2;
    if (write(c[1], "tail", 4) != 4) return 2;
    close(c[1]);
    close(d[0]);
    char path[4096];
    snprintf(path, sizeof path, "%s/go", dir);
    place(open(path, O_RDWR), 16);
    place(open("/proc/self/fd/10", O_RDONLY), 17);
    if (pipe(s)) return 2;

    pid_t child = fork();
    if (child < 0) return 2;
    char byte;
    if (child == 0) {
        close(s[0]);
        report("before");
        if (write(s[1], "x", 1) != 1) _exit(2);
        close(s[1]);
        if (read(16, &byte, 1) != 1) _exit(2);
        report("after");
        _exit(0);
    }
    close(s[1]);
    report("before");
    if (read(s[0], &byte, 1) != 1) return 2;
    close(s[0]);
    printf("ready\n");
    fflush(stdout);
    if (read(16, &byte, 1) != 1) return 2;
    report("after");

    snprintf(path, sizeof path, "%s/after.%d", dir, (int)getpid());
    FILE *out = fopen(path, "a");
    if (!out) return 2;
    char buf[64];
    size_t got = 0;
    ssize_t n;
    while ((n = read(14, buf + got, sizeof buf - 1 - got)) > 0) got += n;
    buf[got] = 0;
    fprintf(out, "tail %s %s\n", buf, n == 0 ? "eof" : strerror(errno));
    n = write(15, "x", 1);
    fprintf(out, "write %s\n", n < 0 && errno == EPIPE ? "EPIPE" : "not EPIPE");
    fclose(out);
    int status;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
        return 3;
    return 0;
}
