#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
/* argv: MODE DIR. Two or three processes joined by one kind of channel, each driven by
   the test through its own control FIFO DIR/NAME.ctl (one command byte at a time) and
   acknowledging on DIR/NAME.ack. Process "a" is the parent; it forks "b" (and "c").
   Every process writes its report lines to the stdout they share (one open file, so one
   offset: the order of the lines is the order of the commands).

   MODE fifo:       a -> b through the FIFO DIR/ab, b -> a through the FIFO DIR/ba.
   MODE socketpair: a <-> b through one AF_UNIX stream socketpair.
   MODE packet:     a -> b through a packet-mode pipe (pipe2 O_DIRECT).
   MODE blocked:    a -> b through a 1 MiB pipe (F_SETPIPE_SZ), b -> c through a pipe.

   Commands (each acknowledged with one byte once done):
   'w': fifo/socketpair: write the next CHUNK bytes of the sender's stream to the peer;
        packet: write the next NPKT packets (sizes 1..4096, one write each);
        blocked (b only): write the next SMALL bytes into c's pipe.
   'r': read back what one 'w' of the peer wrote, checking every byte (and in packet mode
        every read's length: one read, one packet), then print a report line.
   'W': (blocked, a) acknowledge first, then write BIG bytes (more than the 1 MiB pipe
        holds: blocks until b reads) and acknowledge again.
   'R': (blocked, b) read BIG bytes from a, checking them; (blocked, c) acknowledge
        first, then read SMALL bytes from b (blocks on the empty pipe until b writes),
        check them and acknowledge again. (a and c print nothing then: they run at the
        same time as b, and the order of the lines would be left to chance.)
   'q': children: print a summary, acknowledge and exit 0. a: wait for each child and
        print its exit status, then its own summary, exit 0.
   Any difference is printed ("NAME: ... got X, want Y") and the process exits 1. */

#define CHUNK 20000
#define NPKT 12
#define BIG ((1 << 20) + (1 << 17))
#define SMALL 1000

static char name;
static int ctl = -1, ack = -1, wfd = -1, rfd = -1;
static unsigned long long sent, received;
static uint32_t sum = 2166136261u;
static pid_t kids[2];
static char kid_names[2];
static int nkids;

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    dprintf(1, "%c: ", name);
    vdprintf(1, fmt, ap);
    dprintf(1, "\n");
    va_end(ap);
    _exit(1);
}

/* Byte K of the stream that process S sends. */
static unsigned char pat(char s, unsigned long long k) {
    uint32_t x = (uint32_t)(k + (unsigned)s * 977u) * 2654435761u;
    return (unsigned char)((x >> 24) ^ (k >> 16));
}

static unsigned psize(unsigned long long i) {
    return 1 + (unsigned)(((uint32_t)i * 2654435761u) >> 7) % 4096;
}

static unsigned char pbyte(unsigned long long i, unsigned j) {
    return (unsigned char)(i * 31 + j * 7);
}

static void account(const unsigned char *b, size_t n) {
    for (size_t i = 0; i < n; i++) sum = (sum ^ b[i]) * 16777619u;
}

static void write_all(int fd, const unsigned char *b, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0) die("write: %s", strerror(errno));
        b += w;
        n -= (size_t)w;
    }
}

static void send_stream(char s, size_t n) {
    static unsigned char buf[BIG];
    for (size_t i = 0; i < n; i++) buf[i] = pat(s, sent + i);
    write_all(wfd, buf, n);
    sent += n;
}

static void recv_stream(char s, size_t n) {
    static unsigned char buf[BIG];
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(rfd, buf + got, n - got);
        if (r < 0) die("read: %s", strerror(errno));
        if (r == 0) die("end of file after %llu of %llu bytes", received + got, received + n);
        got += (size_t)r;
    }
    for (size_t i = 0; i < n; i++)
        if (buf[i] != pat(s, received + i))
            die("byte %llu: got %u, want %u", received + i, buf[i], pat(s, received + i));
    account(buf, n);
    received += n;
}

static void send_packets(void) {
    static unsigned char buf[4096];
    for (int k = 0; k < NPKT; k++, sent++) {
        unsigned n = psize(sent);
        for (unsigned j = 0; j < n; j++) buf[j] = pbyte(sent, j);
        ssize_t w = write(wfd, buf, n);
        if (w != (ssize_t)n) die("packet %llu: wrote %zd of %u bytes", sent, w, n);
    }
}

static void recv_packets(void) {
    static unsigned char buf[1 << 16];
    for (int k = 0; k < NPKT; k++, received++) {
        ssize_t r = read(rfd, buf, sizeof buf);
        unsigned n = psize(received);
        if (r < 0) die("packet %llu: read: %s", received, strerror(errno));
        if ((size_t)r != n) die("packet %llu: read %zd bytes, want %u", received, r, n);
        for (unsigned j = 0; j < n; j++)
            if (buf[j] != pbyte(received, j))
                die("packet %llu byte %u: got %u, want %u", received, j, buf[j], pbyte(received, j));
        account(buf, n);
    }
}

static void acknowledge(void) {
    if (write(ack, "k", 1) != 1) _exit(4);
}

static int serve(const char *mode, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%c.ctl", dir, name);
    ctl = open(path, O_RDONLY);
    snprintf(path, sizeof path, "%s/%c.ack", dir, name);
    ack = open(path, O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    char from = name == 'a' ? 'b' : name == 'b' ? 'a' : 'b';
    int packet = !strcmp(mode, "packet"), blocked = !strcmp(mode, "blocked");
    for (;;) {
        char c;
        if (read(ctl, &c, 1) != 1) return 3;
        switch (c) {
        case 'w':
            if (packet) {
                send_packets();
                dprintf(1, "%c: wrote %d packets, %llu in all\n", name, NPKT, sent);
            } else {
                send_stream(name, blocked ? SMALL : CHUNK);
                dprintf(1, "%c: wrote %llu bytes in all\n", name, sent);
            }
            break;
        case 'r':
            if (packet) {
                recv_packets();
                dprintf(1, "%c: read %d packets, %llu in all, sum %08x\n", name, NPKT, received, sum);
            } else {
                recv_stream(from, CHUNK);
                dprintf(1, "%c: read %llu bytes in all, sum %08x\n", name, received, sum);
            }
            break;
        case 'W':
            acknowledge();
            send_stream(name, BIG);
            break;
        case 'R':
            if (name == 'c') {
                acknowledge();
                recv_stream(from, SMALL);
            } else {
                recv_stream(from, BIG);
                dprintf(1, "%c: read %llu bytes in all, sum %08x\n", name, received, sum);
            }
            break;
        case 'q':
            for (int k = 0; k < nkids; k++) {
                int st;
                if (waitpid(kids[k], &st, 0) != kids[k])
                    dprintf(1, "%c: waitpid %c failed: errno %d\n", name, kid_names[k], errno);
                else if (WIFEXITED(st))
                    dprintf(1, "%c: %c exited %d\n", name, kid_names[k], WEXITSTATUS(st));
                else
                    dprintf(1, "%c: %c killed by %d\n", name, kid_names[k], WTERMSIG(st));
            }
            dprintf(1, "%c: sent %llu received %llu sum %08x\n", name, sent, received, sum);
            if (name != 'a') acknowledge();
            return 0;
        default:
            die("bad command %d", c);
        }
        acknowledge();
    }
}

static pid_t spawn(char who) {
    pid_t p = fork();
    if (p < 0) _exit(2);
    if (p == 0) name = who;
    else {
        kid_names[nkids] = who;
        kids[nkids++] = p;
    }
    return p;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    const char *mode = argv[1], *dir = argv[2];
    char path[4096];
    name = 'a';
    if (!strcmp(mode, "fifo")) {
        if (spawn('b') == 0) {
            snprintf(path, sizeof path, "%s/ab", dir);
            rfd = open(path, O_RDONLY);
            snprintf(path, sizeof path, "%s/ba", dir);
            wfd = open(path, O_WRONLY);
        } else {
            snprintf(path, sizeof path, "%s/ab", dir);
            wfd = open(path, O_WRONLY);
            snprintf(path, sizeof path, "%s/ba", dir);
            rfd = open(path, O_RDONLY);
        }
    } else if (!strcmp(mode, "socketpair")) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) return 2;
        int mine = spawn('b') == 0 ? sv[1] : sv[0];
        close(mine == sv[0] ? sv[1] : sv[0]);
        wfd = rfd = mine;
    } else if (!strcmp(mode, "packet")) {
        int p[2];
        if (pipe2(p, O_DIRECT) < 0) return 2;
        if (spawn('b') == 0) {
            rfd = p[0];
            close(p[1]);
        } else {
            wfd = p[1];
            close(p[0]);
        }
    } else if (!strcmp(mode, "blocked")) {
        int p1[2], p2[2];
        if (pipe(p1) < 0 || pipe(p2) < 0) return 2;
        if (fcntl(p1[1], F_SETPIPE_SZ, 1 << 20) != 1 << 20) return 2;
        if (spawn('b') == 0) {
            rfd = p1[0];
            wfd = p2[1];
            close(p1[1]);
            close(p2[0]);
        } else if (spawn('c') == 0) {
            nkids = 0;
            rfd = p2[0];
            close(p1[0]);
            close(p1[1]);
            close(p2[1]);
        } else {
            wfd = p1[1];
            close(p1[0]);
            close(p2[0]);
            close(p2[1]);
        }
    } else {
        return 2;
    }
    if (name != 'a') nkids = 0;
    if (wfd < 0 && rfd < 0) return 2;
    return serve(mode, dir);
}
