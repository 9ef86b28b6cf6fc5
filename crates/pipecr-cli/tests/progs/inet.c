/* inet OUT CTL ACK: TCP, UDP and netlink sockets of one process, self-checking, for the
 * inet socket tests (run in a network namespace of the test's own, loopback up).
 *
 * Set up at start, then one ack byte on ACK:
 *   - TCP over IPv4: a listener on 127.0.0.1 (SO_REUSEADDR, backlog 7), a connection to
 *     it (client end: TCP_NODELAY, SO_KEEPALIVE, TCP_KEEPIDLE 77, TCP_KEEPINTVL 11,
 *     TCP_KEEPCNT 5), 300000 bytes sent by the client and 200000 by the server, none
 *     read; a second connection never accepted, its client having sent 5000 bytes;
 *   - TCP over IPv6: a listener on [::1] (SO_REUSEPORT, IPV6_V6ONLY, backlog 3), a
 *     connection with 1000 bytes queued each way; a TCP socket bound and never
 *     listening or connected;
 *   - UDP: u1 bound on 127.0.0.1, u2 bound and connected to u1, u3 never bound (bound
 *     by its first send); u2 sends "one" and "two-two", u3 sends "three", u1 reads none;
 *     an IPv6 pair with "six" queued;
 *   - netlink: a route socket bound to RTMGRP_LINK | RTMGRP_IPV4_IFADDR and a uevent
 *     socket bound to group 1.
 * OUT gets "ports P4 P6" (the two listeners).
 * Per byte read from CTL:
 *   'v'  check everything from inside: options, queued bytes and datagrams with their
 *        source addresses, 2 MB more each way on both connections, a new connection to
 *        each listener, netlink port ids and groups; writes "ok" or what differs to OUT;
 *   'q'  exit 0.
 * Each command is followed by one ack byte. Errors exit with a status above 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int ack_fd;
static FILE *out;
static int bad;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
    fflush(out);
    bad = 1;
}

static void die(const char *what)
{
    fprintf(out, "fatal: %s: %s\n", what, strerror(errno));
    fflush(out);
    exit(2);
}

static int port_of_addr(struct sockaddr_storage *a)
{
    return a->ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)a)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)a)->sin_port);
}

static void ack(void)
{
    fflush(out);
    if (write(ack_fd, "a", 1) != 1)
        exit(4);
}

/* Byte i of the stream named `seed`. */
static unsigned char pat(unsigned seed, uint64_t i)
{
    return (unsigned char)((i * 7 + seed * 131 + (i >> 8)) & 0xff);
}

static void set_int(int fd, int level, int name, int v)
{
    if (setsockopt(fd, level, name, &v, sizeof v) != 0)
        die("setsockopt");
}

static int get_int(int fd, int level, int name)
{
    int v = -1;
    socklen_t l = sizeof v;
    if (getsockopt(fd, level, name, &v, &l) != 0)
        die("getsockopt");
    return v;
}

/* Sends `len` bytes of stream `seed` starting at offset `from`, all of it (blocking). */
static void send_pat(int fd, unsigned seed, uint64_t from, size_t len)
{
    unsigned char buf[8192];
    size_t done = 0;
    while (done < len) {
        size_t n = len - done < sizeof buf ? len - done : sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = pat(seed, from + done + i);
        ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("send");
        done += (size_t)w;
    }
}

/* Moves `len` bytes each way between a and b at once (both directions in flight,
 * neither side blocking), checking every byte received against the patterns. */
static void exchange(int a, int b, unsigned sa, unsigned sb, uint64_t *oa, uint64_t *ob,
                     size_t len, const char *name)
{
    size_t sent_a = 0, sent_b = 0, got_a = 0, got_b = 0;
    unsigned char buf[16384];
    fcntl(a, F_SETFL, fcntl(a, F_GETFL) | O_NONBLOCK);
    fcntl(b, F_SETFL, fcntl(b, F_GETFL) | O_NONBLOCK);
    while (got_a < len || got_b < len) {
        struct pollfd p[2] = {{a, POLLIN | (sent_a < len ? POLLOUT : 0), 0},
                              {b, POLLIN | (sent_b < len ? POLLOUT : 0), 0}};
        if (poll(p, 2, 10000) <= 0) {
            fail("%s: stalled (sent %zu/%zu, got %zu/%zu)", name, sent_a, sent_b, got_a, got_b);
            return;
        }
        int fds[2] = {a, b};
        for (int k = 0; k < 2; k++) {
            size_t *sent = k ? &sent_b : &sent_a;
            size_t *got = k ? &got_b : &got_a; /* what k receives from the other */
            uint64_t *mine = k ? ob : oa, *theirs = k ? oa : ob;
            unsigned my_seed = k ? sb : sa, their_seed = k ? sa : sb;
            if ((p[k].revents & POLLOUT) && *sent < len) {
                size_t n = len - *sent < sizeof buf ? len - *sent : sizeof buf;
                for (size_t i = 0; i < n; i++)
                    buf[i] = pat(my_seed, *mine + *sent + i);
                ssize_t w = send(fds[k], buf, n, MSG_NOSIGNAL);
                if (w > 0)
                    *sent += (size_t)w;
                else if (w < 0 && errno != EAGAIN) {
                    fail("%s: send: %s", name, strerror(errno));
                    return;
                }
            }
            if (p[k].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t r = recv(fds[k], buf, sizeof buf, 0);
                if (r == 0) {
                    fail("%s: end of file after %zu bytes", name, *got);
                    return;
                }
                if (r < 0 && errno != EAGAIN) {
                    fail("%s: recv: %s", name, strerror(errno));
                    return;
                }
                for (ssize_t i = 0; i < r; i++)
                    if (buf[i] != pat(their_seed, *theirs + *got + (size_t)i)) {
                        fail("%s: byte %zu differs", name, *got + (size_t)i);
                        return;
                    }
                if (r > 0)
                    *got += (size_t)r;
                if (*got > len) {
                    fail("%s: more bytes than sent", name);
                    return;
                }
            }
        }
    }
    *oa += len;
    *ob += len;
}

/* Reads exactly `len` bytes of stream `seed` from offset 0 (what was queued). */
static void expect_queued(int fd, unsigned seed, size_t len, const char *name)
{
    unsigned char buf[8192];
    size_t got = 0;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    while (got < len) {
        size_t n = len - got < sizeof buf ? len - got : sizeof buf;
        ssize_t r = recv(fd, buf, n, 0);
        if (r <= 0) {
            fail("%s: queued bytes: got %zu of %zu (%s)", name, got, len,
                 r ? strerror(errno) : "end of file");
            return;
        }
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != pat(seed, got + (size_t)i)) {
                fail("%s: queued byte %zu differs", name, got + (size_t)i);
                return;
            }
        got += (size_t)r;
    }
    int more = 0;
    if (ioctl(fd, FIONREAD, &more) != 0 || more != 0)
        fail("%s: %d more bytes than were queued", name, more);
}


static int tcp_listener(int family, int reuse_opt, int backlog)
{
    int s = socket(family, SOCK_STREAM, 0);
    if (s < 0)
        die("socket");
    set_int(s, SOL_SOCKET, reuse_opt, 1);
    if (family == AF_INET6) {
        set_int(s, IPPROTO_IPV6, IPV6_V6ONLY, 1);
        struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        if (bind(s, (void *)&a, sizeof a) != 0)
            die("bind v6");
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (bind(s, (void *)&a, sizeof a) != 0)
            die("bind v4");
    }
    if (listen(s, backlog) != 0)
        die("listen");
    return s;
}

static int connect_to(int listener)
{
    struct sockaddr_storage a;
    socklen_t l = sizeof a;
    if (getsockname(listener, (void *)&a, &l) != 0)
        die("getsockname");
    int c = socket(a.ss_family, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (void *)&a, l) != 0)
        die("connect");
    return c;
}

static int port_of(int fd)
{
    struct sockaddr_storage a;
    socklen_t l = sizeof a;
    if (getsockname(fd, (void *)&a, &l) != 0)
        die("getsockname");
    return a.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&a)->sin6_port)
                                   : ntohs(((struct sockaddr_in *)&a)->sin_port);
}

static int udp(int family, int do_bind)
{
    int s = socket(family, SOCK_DGRAM, 0);
    if (s < 0)
        die("socket udp");
    if (do_bind) {
        if (family == AF_INET6) {
            struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
            if (bind(s, (void *)&a, sizeof a) != 0)
                die("bind udp6");
        } else {
            struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
            if (bind(s, (void *)&a, sizeof a) != 0)
                die("bind udp");
        }
    }
    return s;
}

static void send_to(int from, int to, const char *msg)
{
    struct sockaddr_storage a;
    socklen_t l = sizeof a;
    getsockname(to, (void *)&a, &l);
    if (sendto(from, msg, strlen(msg), 0, (void *)&a, l) != (ssize_t)strlen(msg))
        die("sendto");
}

/* Receives one datagram on `fd` (non-blocking) and checks its bytes and its source. */
static void expect_dgram(int fd, const char *want, int source)
{
    char buf[256];
    struct sockaddr_storage from, src;
    socklen_t fl = sizeof from, sl = sizeof src;
    ssize_t n = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (void *)&from, &fl);
    if (n < 0) {
        fail("udp: no datagram \"%s\": %s", want, strerror(errno));
        return;
    }
    if ((size_t)n != strlen(want) || memcmp(buf, want, (size_t)n) != 0) {
        fail("udp: got \"%.*s\", want \"%s\"", (int)n, buf, want);
        return;
    }
    getsockname(source, (void *)&src, &sl);
    /* An unbound sender was bound to the wildcard address by its first send: its
     * datagrams carry 127.0.0.1, so compare the port (and the address when bound). */
    int same = from.ss_family == src.ss_family && port_of_addr(&from) == port_of_addr(&src);
    if (same && src.ss_family == AF_INET && ((struct sockaddr_in *)&src)->sin_addr.s_addr != 0)
        same = ((struct sockaddr_in *)&src)->sin_addr.s_addr == ((struct sockaddr_in *)&from)->sin_addr.s_addr;
    if (!same)
        fail("udp: \"%s\" came from another address than its sender's (port %d, want %d)",
             want, port_of_addr(&from), port_of(source));
}


static int nl(int proto, unsigned groups, unsigned *port)
{
    int s = socket(AF_NETLINK, SOCK_RAW, proto);
    if (s < 0)
        die("socket netlink");
    struct sockaddr_nl a = {.nl_family = AF_NETLINK, .nl_groups = groups};
    if (bind(s, (void *)&a, sizeof a) != 0)
        die("bind netlink");
    socklen_t l = sizeof a;
    if (getsockname(s, (void *)&a, &l) != 0)
        die("getsockname netlink");
    *port = a.nl_pid;
    return s;
}

static void check_nl(int s, unsigned port, unsigned groups, const char *name)
{
    struct sockaddr_nl a;
    socklen_t l = sizeof a;
    if (getsockname(s, (void *)&a, &l) != 0)
        die("getsockname netlink");
    if (a.nl_pid != port)
        fail("%s: port id %u, want %u", name, a.nl_pid, port);
    uint32_t words[4] = {0};
    socklen_t wl = sizeof words;
    if (getsockopt(s, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, words, &wl) != 0)
        die("NETLINK_LIST_MEMBERSHIPS");
    if (words[0] != groups)
        fail("%s: groups %#x, want %#x", name, words[0], groups);
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    out = fopen(argv[1], "w");
    int ctl = open(argv[2], O_RDONLY);
    ack_fd = open(argv[3], O_WRONLY);
    if (!out || ctl < 0 || ack_fd < 0)
        return 2;

    /* TCP v4 */
    int l4 = tcp_listener(AF_INET, SO_REUSEADDR, 7);
    int c4 = connect_to(l4);
    int s4 = accept(l4, NULL, NULL);
    if (s4 < 0)
        die("accept");
    set_int(c4, IPPROTO_TCP, TCP_NODELAY, 1);
    set_int(c4, SOL_SOCKET, SO_KEEPALIVE, 1);
    set_int(c4, IPPROTO_TCP, TCP_KEEPIDLE, 77);
    set_int(c4, IPPROTO_TCP, TCP_KEEPINTVL, 11);
    set_int(c4, IPPROTO_TCP, TCP_KEEPCNT, 5);
    uint64_t off_c4 = 0, off_s4 = 0;
    /* The kernel grows buffers as data comes: queue what fits without blocking. */
    send_pat(c4, 1, 0, 300000);
    send_pat(s4, 2, 0, 200000);
    int c5 = connect_to(l4); /* left in the listener's queue */
    send_pat(c5, 9, 0, 5000);

    /* TCP v6 */
    int l6 = tcp_listener(AF_INET6, SO_REUSEPORT, 3);
    int c6 = connect_to(l6);
    int s6 = accept(l6, NULL, NULL);
    if (s6 < 0)
        die("accept v6");
    uint64_t off_c6 = 0, off_s6 = 0;
    send_pat(c6, 3, 0, 1000);
    send_pat(s6, 4, 0, 1000);
    int bound = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in ba = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(bound, (void *)&ba, sizeof ba) != 0)
        die("bind");
    int bound_port = port_of(bound);

    /* UDP */
    int u1 = udp(AF_INET, 1), u2 = udp(AF_INET, 1), u3 = udp(AF_INET, 0);
    send_to(u2, u1, "one");
    send_to(u2, u1, "two-two");
    send_to(u3, u1, "three");
    {
        struct sockaddr_in a;
        socklen_t l = sizeof a;
        getsockname(u1, (void *)&a, &l);
        if (connect(u2, (void *)&a, l) != 0)
            die("connect udp");
    }
    int v1 = udp(AF_INET6, 1), v2 = udp(AF_INET6, 1);
    send_to(v2, v1, "six");

    /* netlink */
    unsigned rt_port, ue_port;
    unsigned rt_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR;
    int rt = nl(NETLINK_ROUTE, rt_groups, &rt_port);
    int ue = nl(NETLINK_KOBJECT_UEVENT, 1, &ue_port);

    fprintf(out, "ports %d %d\n", port_of(l4), port_of(l6));
    ack();

    char c;
    for (;;) {
        ssize_t n = read(ctl, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != 1)
            return 3;
        if (c == 'q')
            return 0;
        if (c != 'v')
            return 5;
        bad = 0;
        /* Options. */
        if (get_int(c4, IPPROTO_TCP, TCP_NODELAY) != 1 || get_int(c4, SOL_SOCKET, SO_KEEPALIVE) != 1 ||
            get_int(c4, IPPROTO_TCP, TCP_KEEPIDLE) != 77 || get_int(c4, IPPROTO_TCP, TCP_KEEPINTVL) != 11 ||
            get_int(c4, IPPROTO_TCP, TCP_KEEPCNT) != 5)
            fail("tcp options of the v4 client differ");
        if (get_int(l4, SOL_SOCKET, SO_REUSEADDR) != 1 || get_int(l4, SOL_SOCKET, SO_ACCEPTCONN) != 1)
            fail("v4 listener: SO_REUSEADDR or SO_ACCEPTCONN lost");
        if (get_int(l6, SOL_SOCKET, SO_REUSEPORT) != 1 || get_int(l6, IPPROTO_IPV6, IPV6_V6ONLY) != 1)
            fail("v6 listener: SO_REUSEPORT or IPV6_V6ONLY lost");
        if (port_of(bound) != bound_port)
            fail("bound socket: port %d, want %d", port_of(bound), bound_port);
        /* The connection waiting in the v4 listener is accepted now, from its client,
         * with the bytes it sent; then no other waits. */
        {
            int ns = accept(l4, NULL, NULL);
            struct sockaddr_in pa, ca;
            socklen_t pl = sizeof pa, cl = sizeof ca;
            if (ns < 0)
                fail("v4 listener: accept: %s", strerror(errno));
            else {
                getpeername(ns, (void *)&pa, &pl);
                getsockname(c5, (void *)&ca, &cl);
                if (pa.sin_port != ca.sin_port)
                    fail("accepted a connection from port %d, want %d", ntohs(pa.sin_port),
                         ntohs(ca.sin_port));
                expect_queued(ns, 9, 5000, "waiting connection");
                uint64_t x = 5000, y = 0;
                exchange(c5, ns, 9, 10, &x, &y, 1 << 20, "waiting connection");
                close(ns);
            }
        }
        fcntl(l4, F_SETFL, fcntl(l4, F_GETFL) | O_NONBLOCK);
        if (accept(l4, NULL, NULL) >= 0 || errno != EAGAIN)
            fail("v4 listener: accept did not say EAGAIN");
        fcntl(l4, F_SETFL, fcntl(l4, F_GETFL) & ~O_NONBLOCK);
        /* The queued bytes, then more both ways. */
        expect_queued(s4, 1, 300000, "v4 server");
        expect_queued(c4, 2, 200000, "v4 client");
        off_c4 = 300000;
        off_s4 = 200000;
        exchange(c4, s4, 1, 2, &off_c4, &off_s4, 2 << 20, "v4 connection");
        expect_queued(s6, 3, 1000, "v6 server");
        expect_queued(c6, 4, 1000, "v6 client");
        off_c6 = off_s6 = 1000;
        exchange(c6, s6, 3, 4, &off_c6, &off_s6, 2 << 20, "v6 connection");
        /* The listeners accept new connections. */
        int ls[2] = {l4, l6};
        for (int k = 0; k < 2; k++) {
            int nc = connect_to(ls[k]);
            int ns = accept(ls[k], NULL, NULL);
            if (ns < 0)
                fail("listener %d: accept: %s", k, strerror(errno));
            else {
                uint64_t x = 0, y = 0;
                exchange(nc, ns, 5, 6, &x, &y, 100000, "new connection");
                close(ns);
            }
            close(nc);
        }
        /* UDP: the datagrams, from their senders, in order; the connected socket. */
        expect_dgram(u1, "one", u2);
        expect_dgram(u1, "two-two", u2);
        expect_dgram(u1, "three", u3);
        expect_dgram(v1, "six", v2);
        if (send(u2, "again", 5, 0) != 5)
            fail("udp: connected send: %s", strerror(errno));
        else
            expect_dgram(u1, "again", u2);
        /* netlink */
        check_nl(rt, rt_port, rt_groups, "route socket");
        check_nl(ue, ue_port, 1, "uevent socket");
        if (!bad)
            fprintf(out, "ok\n");
        ack();
    }
}
