#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
/* argv: OUT CTL ACK [pending|wp|two]. A userfaultfd at fd 10 (UFFD_FEATURE_THREAD_ID) with a
   16-page anonymous area registered for missing faults, served with UFFDIO_COPY: each
   page filled reads "page N served for TID at ADDR" (N the page's index, TID the faulting
   thread, ADDR the fault address from the message: the page's, as the kernel rounds it),
   and the address and thread of the last fault served are kept. Page 0 is touched (and
   served) before the ready line "ready" and its ack byte.
   Default: the userfaultfd is blocking; a handler thread waits in read(2) and serves.
     'v' the main thread touches page 5, a page never touched, checks its bytes, that
         the handler saw the fault at page 5's address from the main thread, that page 0
         kept its bytes and that fd 10 is a userfaultfd; prints "ok" or what differs.
   pending: the userfaultfd is O_NONBLOCK and nobody serves it at first: a second thread
     touches page 3 and waits in the fault; the ready ack comes once poll(2) shows the
     fault queued.
     'v' the main thread waits (poll) for the fault, reads it, serves it, joins the
         toucher and checks page 3's bytes; prints "ok" or what differs.
   wp: as the default, the area registered for write-protect faults too, and page 0
     write-protected (UFFDIO_WRITEPROTECT) before the ready ack.
     'v' checks page 0's bytes, lifts the protection and writes into page 0; prints "ok"
         or what differs.
   two: as the default, with a second userfaultfd at fd 11 (handshake made, nothing
     registered on it).
   'q' exits 0. Every command is acknowledged with one byte on ACK. */
#define PAGES 16
static long page;
static char *area;
static int uffd = 10;
static volatile uintptr_t last_addr;
static volatile long last_tid;
static FILE *out;

static void say(const char *s) {
    fprintf(out, "%s\n", s);
    fflush(out);
}

static void die(const char *what) {
    fprintf(out, "error: %s: %s\n", what, strerror(errno));
    fflush(out);
    exit(1);
}

static void fill(char *buf, uintptr_t addr, long tid) {
    memset(buf, 0, page);
    snprintf(buf, page, "page %ld served for %ld at %#lx", (long)((addr - (uintptr_t)area) / page),
             tid, (unsigned long)addr);
}

/* Serves the fault in `msg`. */
static int serve(const struct uffd_msg *msg) {
    static char buf[65536];
    if (msg->event != UFFD_EVENT_PAGEFAULT) return -1;
    uintptr_t addr = msg->arg.pagefault.address;
    long tid = msg->arg.pagefault.feat.ptid;
    last_addr = addr;
    last_tid = tid;
    fill(buf, addr, tid);
    struct uffdio_copy c = {
        .dst = addr & ~(uintptr_t)(page - 1), .src = (uintptr_t)buf, .len = page, .mode = 0};
    return ioctl(uffd, UFFDIO_COPY, &c);
}

static void *handler(void *arg) {
    (void)arg;
    for (;;) {
        struct uffd_msg msg;
        ssize_t n = read(uffd, &msg, sizeof msg);
        if (n < 0 && errno == EINTR) continue;
        if (n != sizeof msg) die("handler read");
        if (serve(&msg) != 0) die("handler UFFDIO_COPY");
    }
    return 0;
}

static volatile long toucher_tid;
static void *toucher(void *arg) {
    (void)arg;
    toucher_tid = syscall(SYS_gettid);
    return (void *)(intptr_t)area[3 * page];
}

/* "" when the page `i` holds what the handler gives a fault at its start by `tid`. */
static const char *check_page(int i, long tid) {
    static char want[65536], why[256];
    fill(want, (uintptr_t)area + i * page, tid);
    if (memcmp(area + i * page, want, page) != 0) {
        snprintf(why, sizeof why, "page %d reads \"%.60s\", not \"%.60s\"", i, area + i * page, want);
        return why;
    }
    return "";
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    int pending = argc > 4 && strcmp(argv[4], "pending") == 0;
    int wp = argc > 4 && strcmp(argv[4], "wp") == 0;
    int two = argc > 4 && strcmp(argv[4], "two") == 0;
    out = fopen(argv[1], "w");
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (!out || ctl < 0 || ack < 0) return 3;
    page = sysconf(_SC_PAGESIZE);
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | (pending ? O_NONBLOCK : 0));
    if (fd < 0) die("userfaultfd");
    if (dup3(fd, uffd, O_CLOEXEC) != uffd) die("dup3");
    close(fd);
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_THREAD_ID};
    if (ioctl(uffd, UFFDIO_API, &api)) die("UFFDIO_API");
    if (two) {
        int f2 = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
        struct uffdio_api api2 = {.api = UFFD_API, .features = 0};
        if (f2 < 0 || dup3(f2, 11, O_CLOEXEC) != 11 || ioctl(11, UFFDIO_API, &api2)) die("second userfaultfd");
        close(f2);
    }
    area = mmap(0, PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) die("mmap");
    struct uffdio_register r = {
        .range = {.start = (uintptr_t)area, .len = PAGES * page}, .mode = UFFDIO_REGISTER_MODE_MISSING | (wp ? UFFDIO_REGISTER_MODE_WP : 0)};
    if (ioctl(uffd, UFFDIO_REGISTER, &r)) die("UFFDIO_REGISTER");
    long me = syscall(SYS_gettid);
    pthread_t t;
    if (!pending) {
        if (pthread_create(&t, 0, handler, 0)) die("pthread_create");
        volatile char c = area[0];
        (void)c;
        const char *why = check_page(0, me);
        if (*why) {
            say(why);
            return 1;
        }
        struct uffdio_writeprotect w = {.range = {.start = (uintptr_t)area, .len = page},
                                        .mode = UFFDIO_WRITEPROTECT_MODE_WP};
        if (wp && ioctl(uffd, UFFDIO_WRITEPROTECT, &w)) die("UFFDIO_WRITEPROTECT");
    } else {
        /* Page 0 served by the main thread, then a fault left waiting. */
        if (pthread_create(&t, 0, toucher, 0)) die("pthread_create");
        struct pollfd p = {.fd = uffd, .events = POLLIN};
        if (poll(&p, 1, -1) != 1) die("poll");
    }
    say("ready");
    char b = 'r';
    if (write(ack, &b, 1) != 1) return 4;
    for (;;) {
        char cmd;
        if (read(ctl, &cmd, 1) != 1) return 5;
        if (cmd == 'q') return 0;
        if (cmd == 'v' && wp) {
            const char *p = check_page(0, me);
            struct uffdio_writeprotect w = {.range = {.start = (uintptr_t)area, .len = page},
                                            .mode = 0};
            if (!*p && ioctl(uffd, UFFDIO_WRITEPROTECT, &w)) die("UFFDIO_WRITEPROTECT");
            if (!*p) area[page - 1] = 'w';
            say(*p ? p : "ok");
        } else if (cmd == 'v' && !pending) {
            volatile char c = area[5 * page + 123];
            (void)c;
            char why[512] = "";
            const char *p = check_page(5, me);
            char link[64] = "";
            if (readlink("/proc/self/fd/10", link, sizeof link - 1) < 0) strcpy(link, "?");
            if (*p)
                snprintf(why, sizeof why, "%s", p);
            else if (last_addr != (uintptr_t)area + 5 * page)
                snprintf(why, sizeof why, "the handler saw a fault at %#lx, not %#lx",
                         (unsigned long)last_addr, (unsigned long)(area + 5 * page));
            else if (last_tid != me)
                snprintf(why, sizeof why, "the handler saw tid %ld, not %ld", last_tid, me);
            else if (*(p = check_page(0, me)))
                snprintf(why, sizeof why, "%s", p);
            else if (strcmp(link, "anon_inode:[userfaultfd]") != 0)
                snprintf(why, sizeof why, "fd 10 is %s", link);
            say(*why ? why : "ok");
        } else if (cmd == 'v') {
            struct uffd_msg msg;
            struct pollfd p1 = {.fd = uffd, .events = POLLIN};
            if (poll(&p1, 1, -1) != 1) die("poll");
            if (read(uffd, &msg, sizeof msg) != sizeof msg) die("read");
            if (serve(&msg) != 0) die("UFFDIO_COPY");
            void *res;
            pthread_join(t, &res);
            const char *p = check_page(3, toucher_tid);
            say(*p ? p : "ok");
        }
        if (write(ack, &cmd, 1) != 1) return 6;
    }
}
