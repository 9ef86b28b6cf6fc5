/* showkinds DIR: one process holding one descriptor of each event-loop kind, for
 * `pipecr show`.
 *
 * Inherited: fd 0 the read end of a pipe from the test (never written: the process blocks
 * reading it), fd 1 where "ready" goes, fd 2 anything.
 *
 *   fd 3   epoll instance: fd 4 for EPOLLIN with data 0x11, fd 8 for EPOLLIN|EPOLLET with
 *          data 0x22
 *   fd 4   timerfd on CLOCK_MONOTONIC, first expiry in 1000 s, then every 1.5 s
 *   fd 5   signalfd for SIGUSR1 and SIGUSR2 (both blocked)
 *   fd 6   inotify instance watching DIR for IN_CREATE|IN_DELETE (watch 1)
 *   fd 7   /proc/self/status, 10 bytes read (position 10)
 *   fd 8   read end of a pipe holding "left" whose write end is closed
 *
 * Every descriptor but 0-2 is close-on-exec except fd 8. Any error: a message on stderr
 * and exit 2.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

static void die(const char *what)
{
    perror(what);
    exit(2);
}

/* Moves fd to number `to` (close-on-exec when asked) and closes the original. */
static void move_fd(int fd, int to, int cloexec)
{
    if (fd < 0)
        die("create");
    if (dup3(fd, to, cloexec ? O_CLOEXEC : 0) != to)
        die("dup3");
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: showkinds DIR\n");
        return 2;
    }
    /* Created at high numbers first, so that moving each to its place closes nothing. */
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    struct itimerspec its = {
        .it_interval = {.tv_sec = 1, .tv_nsec = 500000000},
        .it_value = {.tv_sec = 1000},
    };
    if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) != 0)
        die("timerfd");
    move_fd(tfd, 14, 1);

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGUSR2);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0)
        die("sigprocmask");
    move_fd(signalfd(-1, &mask, SFD_CLOEXEC), 15, 1);

    int in = inotify_init1(IN_CLOEXEC);
    if (in < 0 || inotify_add_watch(in, argv[1], IN_CREATE | IN_DELETE) != 1)
        die("inotify");
    move_fd(in, 16, 1);

    int status = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    char ten[10];
    if (status < 0 || read(status, ten, sizeof ten) != (ssize_t)sizeof ten)
        die("/proc/self/status");
    move_fd(status, 17, 1);

    int p[2];
    if (pipe(p) != 0 || write(p[1], "left", 4) != 4)
        die("pipe");
    close(p[1]);
    move_fd(p[0], 18, 0);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    move_fd(ep, 13, 1);

    move_fd(13, 3, 1);
    move_fd(14, 4, 1);
    move_fd(15, 5, 1);
    move_fd(16, 6, 1);
    move_fd(17, 7, 1);
    move_fd(18, 8, 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x11};
    if (epoll_ctl(3, EPOLL_CTL_ADD, 4, &ev) != 0)
        die("epoll_ctl fd 4");
    ev = (struct epoll_event){.events = EPOLLIN | EPOLLET, .data.u64 = 0x22};
    if (epoll_ctl(3, EPOLL_CTL_ADD, 8, &ev) != 0)
        die("epoll_ctl fd 8");

    if (write(1, "ready\n", 6) != 6)
        die("write ready");
    char b;
    while (read(0, &b, 1) > 0) {
    }
    return 0;
}
