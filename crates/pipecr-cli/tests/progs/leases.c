/* File leases and O_ASYNC through dump and restore: leases OUT CTL ACK

   Setup, in DIR (the directory of OUT), with SIGRTMIN+2..+5 blocked in both processes:
   - the parent opens DIR/rlease read-only at fd 10, takes a read lease (F_SETLEASE
     F_RDLCK) and sets F_SETSIG SIGRTMIN+2;
   - a child opens DIR/wlease read-write at fd 11, takes a write lease and sets F_SETSIG
     SIGRTMIN+3;
   - the parent's pipe (read end fd 12, write end fd 13) holds "abc"; then the read end
     gets O_ASYNC, owner the parent (F_SETOWN_EX), signal SIGRTMIN+4;
   - the parent's socketpair (fd 14, its peer fd 15): fd 14 holds "xyz" queued; then it
     gets O_ASYNC | O_NONBLOCK, owner the parent, signal SIGRTMIN+5.
   No signal is pending then (checked). Prints "pids PARENT CHILD" and acks.

   'v': each process checks that none of those signals is pending (nothing was signalled
   by the restore), its lease (F_GETLEASE), the owners and signals; the parent writes "d"
   into fd 13 and must get SIGRTMIN+4 with si_fd 12, then reads "abcd"; it writes "w"
   into fd 15 and must get SIGRTMIN+5 with si_fd 14, then reads "xyzw".
   Prints "ok" or what failed, acks.
   'b' (sent once the test has tried to open both files in a conflicting way, which
   starts breaking the leases): the parent must have SIGRTMIN+2 with si_fd 10, the child
   SIGRTMIN+3 with si_fd 11 (si_code POLL_MSG); each then releases its lease (F_UNLCK).
   Prints "ok" or what failed, acks. 'q': exits (the child too). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failed;
static sigset_t sigs;

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char line[400];
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    dprintf(1, "FAIL %d: %s\n", (int)getpid(), line);
    failed = 1;
}

static void die(const char *what) {
    dprintf(1, "setup %d: %s: %s\n", (int)getpid(), what, strerror(errno));
    _exit(2);
}

static void at(int fd, int want, const char *what) {
    if (fd < 0)
        die(what);
    if (fd != want) {
        if (dup2(fd, want) < 0)
            die("dup2");
        close(fd);
    }
}

/* None of SIGRTMIN+2..+5 pending. */
static void none_pending(const char *when) {
    sigset_t p;
    sigpending(&p);
    for (int s = SIGRTMIN + 2; s <= SIGRTMIN + 5; s++)
        if (sigismember(&p, s))
            fail("%s: SIGRTMIN+%d is pending", when, s - SIGRTMIN);
}

/* Waits (10 s at most) for signal `sig`, checks si_fd and si_code. */
static void expect_signal(int sig, int fd, int code, const char *what) {
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    siginfo_t si;
    struct timespec ts = {10, 0};
    int got = sigtimedwait(&one, &si, &ts);
    if (got != sig)
        fail("%s: no SIGRTMIN+%d (%s)", what, sig - SIGRTMIN, strerror(errno));
    else if (si.si_fd != fd || si.si_code != code)
        fail("%s: si_fd %d si_code %d, want %d %d", what, si.si_fd, si.si_code, fd, code);
}

static void check_owner(int fd, pid_t pid, int sig) {
    struct f_owner_ex o;
    if (fcntl(fd, F_GETOWN_EX, &o) || o.type != F_OWNER_PID || o.pid != pid)
        fail("fd %d owner %d/%d, want pid %d", fd, o.type, o.pid, (int)pid);
    if (fcntl(fd, F_GETSIG) != sig)
        fail("fd %d F_GETSIG %d, want %d", fd, fcntl(fd, F_GETSIG), sig);
}

static void child(int go, int done, const char *wpath) {
    at(open(wpath, O_RDWR), 11, "open wlease");
    if (fcntl(11, F_SETLEASE, F_WRLCK))
        die("F_SETLEASE F_WRLCK");
    if (fcntl(11, F_SETSIG, SIGRTMIN + 3))
        die("F_SETSIG");
    none_pending("child setup");
    write(done, "r", 1);
    for (;;) {
        char c;
        ssize_t r = read(go, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r != 1)
            _exit(0);
        failed = 0;
        if (c == 'v') {
            none_pending("child after restore");
            if (fcntl(11, F_GETLEASE) != F_WRLCK)
                fail("F_GETLEASE %d, want F_WRLCK", fcntl(11, F_GETLEASE));
            check_owner(11, getpid(), SIGRTMIN + 3);
            write(done, "s", 1);
        } else if (c == 'b') {
            expect_signal(SIGRTMIN + 3, 11, POLL_MSG, "write lease break");
            if (fcntl(11, F_SETLEASE, F_UNLCK))
                fail("F_SETLEASE F_UNLCK: %s", strerror(errno));
        }
        write(done, failed ? "f" : "o", 1);
    }
}

int main(int argc, char **argv) {
    if (argc < 4)
        return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0)
        return 2;
    close(out);
    char dir[512], rpath[600], wpath[600];
    snprintf(dir, sizeof dir, "%s", argv[1]);
    snprintf(rpath, sizeof rpath, "%s/rlease", dirname(dir));
    snprintf(dir, sizeof dir, "%s", argv[1]);
    snprintf(wpath, sizeof wpath, "%s/wlease", dirname(dir));
    sigemptyset(&sigs);
    for (int s = SIGRTMIN + 2; s <= SIGRTMIN + 5; s++)
        sigaddset(&sigs, s);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    /* Descriptors 3..9 for our own pipes, the numbers we test from 10 up. */
    int go[2], done[2];
    if (pipe(go) || pipe(done))
        return 2;
    pid_t kid = fork();
    if (kid < 0)
        die("fork");
    if (kid == 0) {
        close(go[1]);
        close(done[0]);
        child(go[0], done[1], wpath);
    }
    close(go[0]);
    close(done[1]);
    char b;
    if (read(done[0], &b, 1) != 1)
        die("child setup");

    at(open(rpath, O_RDONLY), 10, "open rlease");
    if (fcntl(10, F_SETLEASE, F_RDLCK))
        die("F_SETLEASE F_RDLCK");
    if (fcntl(10, F_SETSIG, SIGRTMIN + 2))
        die("F_SETSIG");

    int p[2];
    if (pipe(p))
        die("pipe");
    at(p[0], 12, "pipe");
    at(p[1], 13, "pipe");
    if (write(13, "abc", 3) != 3)
        die("write pipe");
    struct f_owner_ex o = {F_OWNER_PID, getpid()};
    if (fcntl(12, F_SETOWN_EX, &o) || fcntl(12, F_SETSIG, SIGRTMIN + 4) ||
        fcntl(12, F_SETFL, O_ASYNC))
        die("fcntl pipe");

    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp))
        die("socketpair");
    at(sp[0], 14, "socketpair");
    at(sp[1], 15, "socketpair");
    if (write(15, "xyz", 3) != 3)
        die("write socket");
    if (fcntl(14, F_SETOWN_EX, &o) || fcntl(14, F_SETSIG, SIGRTMIN + 5) ||
        fcntl(14, F_SETFL, O_ASYNC | O_NONBLOCK))
        die("fcntl socket");
    none_pending("parent setup");
    if (failed)
        return 3;
    printf("pids %d %d\n", getpid(), kid);
    fflush(stdout);

    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0)
        return 2;
    if (write(ack, "r", 1) != 1)
        return 2;
    for (;;) {
        char c;
        ssize_t r = read(ctl, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r != 1 || c == 'q')
            break;
        failed = 0;
        char kid_says = 'o';
        if (c == 'v') {
            none_pending("parent after restore");
            if (fcntl(10, F_GETLEASE) != F_RDLCK)
                fail("F_GETLEASE %d, want F_RDLCK", fcntl(10, F_GETLEASE));
            check_owner(10, getpid(), SIGRTMIN + 2);
            check_owner(12, getpid(), SIGRTMIN + 4);
            check_owner(14, getpid(), SIGRTMIN + 5);
            if ((fcntl(12, F_GETFL) & O_ASYNC) == 0 || (fcntl(14, F_GETFL) & O_ASYNC) == 0)
                fail("O_ASYNC lost: %#x %#x", fcntl(12, F_GETFL), fcntl(14, F_GETFL));
            write(go[1], "v", 1);
            if (read(done[0], &kid_says, 1) != 1 || kid_says != 's')
                fail("child's first check: %c", kid_says);
            /* The pipe: readiness signals us, naming fd 12. */
            if (write(13, "d", 1) != 1)
                fail("write pipe: %s", strerror(errno));
            expect_signal(SIGRTMIN + 4, 12, POLL_IN, "pipe readiness");
            char buf[16] = {0};
            if (read(12, buf, sizeof buf) != 4 || memcmp(buf, "abcd", 4))
                fail("pipe holds %s, want abcd", buf);
            /* The socket: readiness signals us, naming fd 14. */
            if (write(15, "w", 1) != 1)
                fail("write socket: %s", strerror(errno));
            expect_signal(SIGRTMIN + 5, 14, POLL_IN, "socket readiness");
            memset(buf, 0, sizeof buf);
            if (read(done[0], &kid_says, 1) != 1)
                kid_says = 'x';
            if (read(14, buf, sizeof buf) != 4 || memcmp(buf, "xyzw", 4))
                fail("socket holds %s, want xyzw", buf);
        } else if (c == 'b') {
            expect_signal(SIGRTMIN + 2, 10, POLL_MSG, "read lease break");
            if (fcntl(10, F_SETLEASE, F_UNLCK))
                fail("F_SETLEASE F_UNLCK: %s", strerror(errno));
            write(go[1], "b", 1);
            if (read(done[0], &kid_says, 1) != 1)
                kid_says = 'x';
        }
        if (kid_says != 'o')
            fail("the child's check failed (%c)", kid_says);
        printf("%s\n", failed ? "failed" : "ok");
        fflush(stdout);
        if (write(ack, "a", 1) != 1)
            return 2;
    }
    close(go[1]);
    int st;
    waitpid(kid, &st, 0);
    return 0;
}
