/* epollstate OUT CTL ACK: the states of epoll registrations that events leave behind.
 *
 * One epoll instance, five pipes (read ends registered, write ends kept):
 *   A (data 1) EPOLLIN | EPOLLONESHOT, fired: a byte is in the pipe, the event taken
 *             (the registration is disarmed, its target ready);
 *   B (data 2) EPOLLIN | EPOLLONESHOT, fired, the byte read back (disarmed, its target
 *             ready for nothing);
 *   C (data 3) EPOLLIN | EPOLLET, a byte in the pipe, its edge taken by epoll_wait;
 *   D (data 4) EPOLLIN | EPOLLET, a byte written after it was added, edge not yet taken;
 *   E (data 5) EPOLLIN, level-triggered, a byte in the pipe.
 * Acks once set up. Per byte read from CTL:
 *   'v' prints, each line the sorted data of one epoll_wait (timeout 0):
 *       "first: ..."          the events pending now;
 *       "second: ..."         the events of a second wait;
 *       "b-events: X"         B's events as /proc/self/fdinfo shows them (hex);
 *       "b-after-write: ..."  after a byte is written into B's pipe;
 *       "a-rearmed: ..."      after A is re-armed (EPOLL_CTL_MOD, EPOLLIN | EPOLLONESHOT);
 *       "b-after-close: ..."  after B's write end is closed;
 *   'q' exits 0.
 * Every print goes to OUT, followed by one ack byte on ACK. Errors exit above 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static int ep;
static int pa[2], pb[2], pc[2], pd[2], pe[2];

static void add(int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = {.events = events, .data.u64 = data};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) exit(2);
}

static void put(int fd, char c) {
    if (write(fd, &c, 1) != 1) exit(3);
}

/* One epoll_wait with timeout 0: the data values, sorted, after `label`. */
static void wait_line(const char *label) {
    struct epoll_event evs[16];
    int n = epoll_wait(ep, evs, 16, 0);
    if (n < 0) exit(4);
    uint64_t d[16];
    for (int i = 0; i < n; i++) d[i] = evs[i].data.u64;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && d[j - 1] > d[j]; j--) {
            uint64_t t = d[j]; d[j] = d[j - 1]; d[j - 1] = t;
        }
    printf("%s:", label);
    for (int i = 0; i < n; i++) printf(" %llu", (unsigned long long)d[i]);
    printf("\n");
}

/* Takes exactly one event, which must carry `data`. */
static void take(uint64_t data) {
    struct epoll_event ev;
    if (epoll_wait(ep, &ev, 1, 0) != 1 || ev.data.u64 != data) exit(5);
}

static void b_events(void) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
    FILE *f = fopen(path, "r");
    if (!f) exit(6);
    unsigned events = 0;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        int tfd;
        unsigned ev;
        if (sscanf(line, "tfd: %d events: %x", &tfd, &ev) == 2 && tfd == pb[0]) {
            events = ev;
            found = 1;
        }
    }
    fclose(f);
    if (!found) exit(7);
    printf("b-events: %x\n", events);
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    ep = epoll_create1(0);
    if (ep < 0 || pipe(pa) || pipe(pb) || pipe(pc) || pipe(pd) || pipe(pe)) return 2;
    /* Each fired alone, before the next is added. */
    add(pa[0], EPOLLIN | EPOLLONESHOT, 1);
    put(pa[1], 'a');
    take(1);
    add(pb[0], EPOLLIN | EPOLLONESHOT, 2);
    put(pb[1], 'b');
    take(2);
    char c;
    if (read(pb[0], &c, 1) != 1) return 2;
    add(pc[0], EPOLLIN | EPOLLET, 3);
    put(pc[1], 'c');
    take(3);
    add(pd[0], EPOLLIN | EPOLLET, 4);
    put(pd[1], 'd');
    add(pe[0], EPOLLIN, 5);
    put(pe[1], 'e');
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    if (write(ack, "r", 1) != 1) return 2;
    for (;;) {
        ssize_t r = read(ctl, &c, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r != 1) return 8;
        if (c == 'q') return 0;
        if (c == 'v') {
            wait_line("first");
            wait_line("second");
            b_events();
            put(pb[1], 'B');
            wait_line("b-after-write");
            struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = 1};
            if (epoll_ctl(ep, EPOLL_CTL_MOD, pa[0], &ev) != 0) return 9;
            wait_line("a-rearmed");
            close(pb[1]);
            wait_line("b-after-close");
        }
        fflush(stdout);
        if (write(ack, "a", 1) != 1) return 2;
    }
}
