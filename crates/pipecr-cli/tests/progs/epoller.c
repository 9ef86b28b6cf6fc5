/* epoller OUT CTL ACK [stdin]: an event loop, self-reporting, for the epoll tests.
 *
 * One epoll instance (shared with a forked child) watches:
 *   - the control FIFO CTL (EPOLLIN, data 1);
 *   - an eventfd (EPOLLIN | EPOLLET, data 2);
 *   - the read end of a pipe, registered at fd 40, then moved to another number (dup,
 *     then 40 closed) (EPOLLIN, data 3).
 * The loop blocks in epoll_wait (EINTR: again). Per byte read from CTL:
 *   'e'  add 1 to the eventfd;            its event prints "eventfd data=D count=N"
 *   'p'  write 'x' into the pipe;         its event prints "pipe data=D byte=B"
 *   's'  ask the child to change the eventfd's registration in the shared epoll to data
 *        5 (EPOLL_CTL_MOD under the eventfd's number); prints "shared ok"
 *   'q'  exit 0
 * With "stdin", the epoll instance (fd 3) also watches stdin (EPOLLIN, data 9), which
 * is then replaced by /dev/null: a registration whose open file only a process outside
 * the tree holds (whoever gave us stdin).
 * Every print goes to OUT (stdout) and is followed by one ack byte on ACK. Any error
 * exits with a status above 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static int ack_fd;

static void done(void)
{
    fflush(stdout);
    if (write(ack_fd, "a", 1) != 1)
        exit(4);
}

static void add(int ep, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event ev = {.events = events, .data.u64 = data};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        exit(2);
}

/* The child: per byte on `cmd`, changes the eventfd's registration, answers on `ans`. */
static void child(int ep, int efd, int cmd, int ans)
{
    char c;
    for (;;) {
        ssize_t n = read(cmd, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != 1)
            exit(0);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = 5};
        char r = epoll_ctl(ep, EPOLL_CTL_MOD, efd, &ev) == 0 ? 'y' : 'n';
        if (write(ans, &r, 1) != 1)
            exit(3);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5)
        return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0)
        return 2;
    close(out);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int efd = eventfd(0, EFD_NONBLOCK);
    int p[2], cmd[2], ans[2];
    if (ep < 0 || efd < 0 || pipe(p) || pipe(cmd) || pipe(ans))
        return 2;
    if (dup2(p[0], 40) != 40)
        return 2;
    close(p[0]);
    add(ep, 40, EPOLLIN, 3);
    int moved = dup(40);
    close(40);
    add(ep, efd, EPOLLIN | EPOLLET, 2);
    if (argc == 5) {
        add(ep, 0, EPOLLIN, 9);
        int nul = open("/dev/null", O_RDONLY);
        if (nul < 0 || dup2(nul, 0) != 0)
            return 2;
        close(nul);
    }
    pid_t pid = fork();
    if (pid < 0)
        return 2;
    if (pid == 0) {
        close(cmd[1]);
        close(ans[0]);
        child(ep, efd, cmd[0], ans[1]);
    }
    close(cmd[0]);
    close(ans[1]);
    int ctl = open(argv[2], O_RDONLY);
    ack_fd = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack_fd < 0)
        return 2;
    add(ep, ctl, EPOLLIN, 1);
    for (;;) {
        struct epoll_event evs[8];
        int n = epoll_wait(ep, evs, 8, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 5;
        for (int i = 0; i < n; i++) {
            uint64_t data = evs[i].data.u64;
            if (data == 1) {
                char c;
                if (read(ctl, &c, 1) != 1)
                    return 6;
                uint64_t one = 1;
                if (c == 'q')
                    return 0;
                if (c == 'e' && write(efd, &one, 8) != 8)
                    return 7;
                if (c == 'p' && write(p[1], "x", 1) != 1)
                    return 7;
                if (c == 's') {
                    char r;
                    if (write(cmd[1], "s", 1) != 1 || read(ans[0], &r, 1) != 1)
                        return 7;
                    printf("shared %s\n", r == 'y' ? "ok" : "failed");
                    done();
                }
            } else if (data == 2 || data == 5) {
                uint64_t count;
                if (read(efd, &count, 8) != 8)
                    return 8;
                printf("eventfd data=%llu count=%llu\n", (unsigned long long)data,
                       (unsigned long long)count);
                done();
            } else if (data == 3) {
                char b;
                if (read(moved, &b, 1) != 1)
                    return 8;
                printf("pipe data=%llu byte=%c\n", (unsigned long long)data, b);
                done();
            } else {
                printf("unexpected data=%llu\n", (unsigned long long)data);
                done();
            }
        }
    }
}
