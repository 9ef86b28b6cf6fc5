/* refusee KIND [PATH SIZE]: a two-process tree for the tests of what `pipecr dump`
 * refuses, self-checking.
 *
 * fd 0 of the root: ping bytes from the test; fd 1 (shared with the child): answers.
 * The root forks a child and passes each ping byte to it through a pipe; the child
 * writes it back on fd 1. So one ping proves that both processes run and that the pipe
 * between them carries data.
 *
 * Before it says ready (one 'R' on fd 1), the child puts at fd 10:
 *   none                   nothing
 *   perf_event             a perf_event fd (a kind pipecr refuses): a disabled software
 *                          dummy event of the child itself
 *   unlinked PATH SIZE     PATH opened read-write, SIZE bytes written, PATH unlinked
 *   inotify DIR            an inotify instance watching DIR for IN_CREATE, holding one
 *                          unread event (32 bytes: DIR/x was created); at end-of-file the
 *                          child checks that the event is still there, unread
 *
 * Handlers for SIGCONT and SIGUSR1 are installed without SA_RESTART: a stop or signal
 * that leaked out of a dump would make a blocking read fail with EINTR. Any error is
 * reported on stderr and the process exits 2; at end-of-file on its input each process
 * exits 0 (the root with its child's status).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *role = "root";

static void die(const char *what)
{
    fprintf(stderr, "refusee %s (pid %d): %s: %s\n", role, (int)getpid(), what,
            strerror(errno));
    _exit(2);
}

static void on_signal(int sig) { (void)sig; }

static void put_at_10(int fd, const char *what)
{
    if (fd < 0)
        die(what);
    if (dup2(fd, 10) != 10)
        die("dup2 to 10");
    close(fd);
}

static int inotify_mode;

static void build(int argc, char **argv)
{
    const char *kind = argv[1];
    if (strcmp(kind, "none") == 0)
        return;
    if (strcmp(kind, "perf_event") == 0) {
        struct perf_event_attr attr;
        memset(&attr, 0, sizeof attr);
        attr.type = PERF_TYPE_SOFTWARE;
        attr.size = sizeof attr;
        attr.config = PERF_COUNT_SW_DUMMY;
        attr.disabled = 1;
        attr.exclude_kernel = 1;
        attr.exclude_hv = 1;
        put_at_10((int)syscall(__NR_perf_event_open, &attr, 0, -1, -1, 0), "perf_event_open");
    } else if (strcmp(kind, "unlinked") == 0 && argc == 4) {
        long size = atol(argv[3]);
        int fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            die("open");
        char buf[4096];
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (char)(i * 7 + 1);
        for (long done = 0; done < size;) {
            long n = size - done < (long)sizeof buf ? size - done : (long)sizeof buf;
            ssize_t w = write(fd, buf, n);
            if (w <= 0)
                die("write the file");
            done += w;
        }
        if (unlink(argv[2]) != 0)
            die("unlink");
        put_at_10(fd, "open");
    } else if (strcmp(kind, "inotify") == 0 && argc == 3) {
        int in = inotify_init1(0);
        if (in < 0)
            die("inotify_init1");
        if (inotify_add_watch(in, argv[2], IN_CREATE) != 1)
            die("inotify_add_watch");
        char path[4096];
        snprintf(path, sizeof path, "%s/x", argv[2]);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0)
            die("create DIR/x");
        close(fd);
        put_at_10(in, "inotify");
        inotify_mode = 1;
    } else {
        errno = EINVAL;
        die("usage: refusee none|perf_event|unlinked PATH SIZE|inotify DIR");
    }
}

/* One byte from fd, 0 at end-of-file; EINTR and any other error are fatal. */
static int get(int fd, char *b)
{
    ssize_t n = read(fd, b, 1);
    if (n < 0)
        die("read");
    return (int)n;
}

static void put(int fd, char b)
{
    if (write(fd, &b, 1) != 1)
        die("write");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        errno = EINVAL;
        die("usage: refusee KIND [PATH SIZE]");
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART */
    if (sigaction(SIGCONT, &sa, NULL) != 0 || sigaction(SIGUSR1, &sa, NULL) != 0)
        die("sigaction");

    int p[2];
    if (pipe(p) != 0)
        die("pipe");
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        role = "child";
        close(p[1]);
        if (dup2(p[0], 0) != 0)
            die("dup2 to 0");
        close(p[0]);
        build(argc, argv);
        put(1, 'R');
        char b;
        while (get(0, &b))
            put(1, b);
        if (inotify_mode) {
            /* The creation of x, unread: no dump consumed it. */
            int queued = -1;
            if (ioctl(10, FIONREAD, &queued) != 0)
                die("ioctl(FIONREAD)");
            char ev[64];
            ssize_t n = read(10, ev, sizeof ev);
            struct inotify_event *e = (struct inotify_event *)ev;
            if (queued != 32 || n != 32 || e->wd != 1 || e->mask != IN_CREATE ||
                strcmp(e->name, "x") != 0) {
                fprintf(stderr, "refusee child: inotify queue %d bytes, read %zd\n", queued, n);
                return 2;
            }
        }
        return 0;
    }
    close(p[0]);
    char b;
    while (get(0, &b))
        put(p[1], b);
    close(p[1]);
    int status;
    while (waitpid(child, &status, 0) < 0)
        if (errno != EINTR)
            die("waitpid");
    if (!WIFEXITED(status)) {
        fprintf(stderr, "refusee root: child %d did not exit (status %#x)\n", (int)child,
                status);
        return 2;
    }
    return WEXITSTATUS(status);
}
