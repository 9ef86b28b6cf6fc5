/* packets OUT CTL ACK: packet, raw IP and ping sockets of one process, self-checking,
 * for the packet socket tests (run in a network namespace of the test's own, loopback
 * up, net.ipv4.ping_group_range allowing group 0).
 *
 * Set up at start, then one ack byte on ACK:
 *   - a: AF_PACKET SOCK_RAW, protocol 0x88b5, bound to lo; PACKET_AUXDATA,
 *     PACKET_ORIGDEV, PACKET_VERSION TPACKET_V2, PACKET_RESERVE 64, PACKET_LOSS,
 *     PACKET_QDISC_BYPASS, PACKET_TIMESTAMP 0x40, SO_PRIORITY 3, SO_RCVBUF 100000;
 *     memberships PACKET_MR_PROMISC and PACKET_MR_ALLMULTI on lo;
 *   - b: AF_PACKET SOCK_DGRAM, protocol 0x88b6, bound to lo, in fanout group 4242
 *     (PACKET_FANOUT_LB), with a classic BPF filter that drops payloads shorter than
 *     10 bytes, locked (SO_LOCK_FILTER); O_NONBLOCK;
 *   - c: AF_PACKET SOCK_RAW with protocol 0, never bound (receives nothing);
 *   - r: AF_INET SOCK_RAW IPPROTO_ICMP bound to and connected to 127.0.0.1, IP_TTL 33,
 *     ICMP_FILTER passing only echo requests, IP_RECVTTL, SO_TIMESTAMPNS, no
 *     IP_MULTICAST_LOOP;
 *   - h: AF_INET SOCK_RAW IPPROTO_UDP with IP_HDRINCL;
 *   - r6: AF_INET6 SOCK_RAW IPPROTO_ICMPV6 bound to ::1, ICMP6_FILTER passing only echo
 *     requests, IPV6_RECVPKTINFO;
 *   - p: a ping socket (SOCK_DGRAM IPPROTO_ICMP) bound to 127.0.0.1 with identifier 777
 *     and IP_RECVERR,
 *     p6 one of IPPROTO_ICMPV6 bound to ::1 with identifier 778.
 * Then it drops CAP_NET_RAW (bounding, effective, permitted), as tcpdump gives up its
 * privileges once its sockets exist: its sockets work on without it.
 * Per byte read from CTL:
 *   'v'  check everything from inside: protocols, interfaces (getsockname), options
 *        (getsockopt), the fanout group and filter; then frames sent on lo now reach a
 *        and b (b's filter drops a short one), an echo request sent through r (connected)
 *        comes back to r, pings through p and p6 are answered (r6 sees p6's request); a new packet socket is refused
 *        (CAP_NET_RAW is still gone); writes "ok" or what differs;
 *   'q'  exit 0.
 * Each command is followed by one ack byte. Errors exit with a status above 1.
 */
#define _GNU_SOURCE
#include <net/if.h> /* before the linux/ headers, which then leave its names alone */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/icmp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/net_tstamp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
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
    exit(3);
}

static void set_int(int s, int level, int name, int v)
{
    if (setsockopt(s, level, name, &v, sizeof v) != 0)
        die("setsockopt");
}

static int get_int(int s, int level, int name)
{
    int v = -12345;
    socklen_t l = sizeof v;
    if (getsockopt(s, level, name, &v, &l) != 0)
        return -12345;
    return v;
}

static void expect_int(const char *what, int s, int level, int name, int want)
{
    int got = get_int(s, level, name);
    if (got != want)
        fail("%s: %d, want %d", what, got, want);
}

static int lo;

static int packet(int type, int proto, int bind_lo)
{
    int s = socket(AF_PACKET, type, htons(proto));
    if (s < 0)
        die("socket(AF_PACKET)");
    if (bind_lo) {
        struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_protocol = htons(proto),
                                .sll_ifindex = lo};
        if (bind(s, (void *)&a, sizeof a) != 0)
            die("bind(AF_PACKET)");
    }
    return s;
}

static void member(int s, int type)
{
    struct packet_mreq m = {.mr_ifindex = lo, .mr_type = type};
    if (setsockopt(s, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &m, sizeof m) != 0)
        die("PACKET_ADD_MEMBERSHIP");
}

/* Waits until s has something to read (fails after 10 s). */
static int readable(int s)
{
    struct pollfd p = {.fd = s, .events = POLLIN};
    return poll(&p, 1, 10000) == 1;
}

/* Sends an Ethernet frame of type `proto` with `payload` on lo through `s` (a packet
 * socket of protocol 0: new ones cannot be made without CAP_NET_RAW). */
static void send_frame(int s, int proto, const char *payload)
{
    unsigned char f[128] = {0};
    memset(f, 0, 12); /* lo's address is all zeros */
    f[12] = proto >> 8;
    f[13] = proto & 0xff;
    size_t n = strlen(payload);
    memcpy(f + 14, payload, n);
    struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_ifindex = lo, .sll_halen = 6};
    if (sendto(s, f, 14 + n, 0, (void *)&a, sizeof a) != (ssize_t)(14 + n))
        die("sendto(frame)");
}

static void drop_net_raw(void)
{
    if (prctl(PR_CAPBSET_DROP, CAP_NET_RAW, 0, 0, 0) != 0)
        die("PR_CAPBSET_DROP");
    struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) != 0)
        die("capget");
    d[0].effective &= ~(1u << CAP_NET_RAW);
    d[0].permitted &= ~(1u << CAP_NET_RAW);
    d[0].inheritable &= ~(1u << CAP_NET_RAW);
    if (syscall(SYS_capset, &h, d) != 0)
        die("capset");
}

static uint16_t csum(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint32_t sum = 0;
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += (p[i] << 8) | p[i + 1];
    if (n & 1)
        sum += p[n - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return htons(~sum);
}

static void check_packet(int a, int b, int c)
{
    struct sockaddr_ll sa;
    socklen_t l = sizeof sa;
    if (getsockname(a, (void *)&sa, &l) != 0)
        die("getsockname(a)");
    if (sa.sll_ifindex != lo || ntohs(sa.sll_protocol) != 0x88b5)
        fail("a: bound to ifindex %d protocol %#x, want %d 0x88b5", sa.sll_ifindex,
             ntohs(sa.sll_protocol), lo);
    expect_int("a SO_TYPE", a, SOL_SOCKET, SO_TYPE, SOCK_RAW);
    expect_int("a PACKET_AUXDATA", a, SOL_PACKET, PACKET_AUXDATA, 1);
    expect_int("a PACKET_ORIGDEV", a, SOL_PACKET, PACKET_ORIGDEV, 1);
    expect_int("a PACKET_VERSION", a, SOL_PACKET, PACKET_VERSION, TPACKET_V2);
    expect_int("a PACKET_RESERVE", a, SOL_PACKET, PACKET_RESERVE, 64);
    expect_int("a PACKET_LOSS", a, SOL_PACKET, PACKET_LOSS, 1);
    expect_int("a PACKET_QDISC_BYPASS", a, SOL_PACKET, PACKET_QDISC_BYPASS, 1);
    expect_int("a PACKET_TIMESTAMP", a, SOL_PACKET, PACKET_TIMESTAMP,
               SOF_TIMESTAMPING_RAW_HARDWARE);
    expect_int("a PACKET_FANOUT", a, SOL_PACKET, PACKET_FANOUT, 0);
    expect_int("a SO_PRIORITY", a, SOL_SOCKET, SO_PRIORITY, 3);
    expect_int("a SO_RCVBUF", a, SOL_SOCKET, SO_RCVBUF, 200000);

    l = sizeof sa;
    if (getsockname(b, (void *)&sa, &l) != 0)
        die("getsockname(b)");
    if (sa.sll_ifindex != lo || ntohs(sa.sll_protocol) != 0x88b6)
        fail("b: bound to ifindex %d protocol %#x, want %d 0x88b6", sa.sll_ifindex,
             ntohs(sa.sll_protocol), lo);
    expect_int("b SO_TYPE", b, SOL_SOCKET, SO_TYPE, SOCK_DGRAM);
    expect_int("b PACKET_FANOUT", b, SOL_PACKET, PACKET_FANOUT,
               4242 | (PACKET_FANOUT_LB << 16));
    expect_int("b PACKET_AUXDATA", b, SOL_PACKET, PACKET_AUXDATA, 0);
    expect_int("b SO_LOCK_FILTER", b, SOL_SOCKET, SO_LOCK_FILTER, 1);
    struct sock_filter got[8];
    socklen_t n = 8; /* counted in instructions */
    if (getsockopt(b, SOL_SOCKET, SO_GET_FILTER, got, &n) != 0 || n != 4)
        fail("b: SO_GET_FILTER: %d instructions (%s)", (int)n, strerror(errno));
    else if (got[1].code != (BPF_JMP | BPF_JGE | BPF_K) || got[1].k != 10)
        fail("b: filter instruction 1 is %#x k %u", got[1].code, got[1].k);
    if (!(fcntl(b, F_GETFL) & O_NONBLOCK))
        fail("b: O_NONBLOCK lost");

    l = sizeof sa;
    if (getsockname(c, (void *)&sa, &l) != 0)
        die("getsockname(c)");
    if (sa.sll_ifindex != 0 || sa.sll_protocol != 0)
        fail("c: ifindex %d protocol %#x, want none", sa.sll_ifindex, ntohs(sa.sll_protocol));

    /* Frames sent now arrive. */
    send_frame(c, 0x88b5, "hello-a-after");
    unsigned char buf[256];
    if (!readable(a))
        fail("a: no frame");
    else {
        ssize_t r = recv(a, buf, sizeof buf, 0);
        if (r != 14 + 13 || memcmp(buf + 14, "hello-a-after", 13) != 0)
            fail("a: received %zd bytes", r);
    }
    send_frame(c, 0x88b6, "tiny");
    send_frame(c, 0x88b6, "hello-b-after");
    if (!readable(b))
        fail("b: no frame");
    else {
        ssize_t r = recv(b, buf, sizeof buf, 0);
        if (r != 13 || memcmp(buf, "hello-b-after", 13) != 0)
            fail("b: received %zd bytes (%.*s): the filter let the short one in?", r,
                 (int)(r > 0 ? r : 0), buf);
    }
    if (recv(b, buf, sizeof buf, MSG_DONTWAIT) >= 0)
        fail("b: a second frame arrived");
    if (recv(c, buf, sizeof buf, MSG_DONTWAIT) >= 0)
        fail("c: received a frame");
    int again = socket(AF_PACKET, SOCK_RAW, 0);
    if (again >= 0 || errno != EPERM)
        fail("a new packet socket: %d (%s), want EPERM", again, strerror(errno));
}

static void check_raw(int r, int h, int r6)
{
    struct sockaddr_in sa;
    socklen_t l = sizeof sa;
    if (getsockname(r, (void *)&sa, &l) != 0)
        die("getsockname(r)");
    if (sa.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
        fail("r: bound to %s", inet_ntoa(sa.sin_addr));
    expect_int("r SO_PROTOCOL", r, SOL_SOCKET, SO_PROTOCOL, IPPROTO_ICMP);
    expect_int("r IP_TTL", r, IPPROTO_IP, IP_TTL, 33);
    expect_int("r IP_RECVTTL", r, IPPROTO_IP, IP_RECVTTL, 1);
    expect_int("r SO_TIMESTAMPNS", r, SOL_SOCKET, SO_TIMESTAMPNS, 1);
    expect_int("r IP_MULTICAST_LOOP", r, IPPROTO_IP, IP_MULTICAST_LOOP, 0);
    uint32_t filt = 0;
    l = sizeof filt;
    if (getsockopt(r, SOL_RAW, ICMP_FILTER, &filt, &l) != 0 || filt != ~(1u << ICMP_ECHO))
        fail("r: ICMP_FILTER %#x", filt);
    expect_int("h IP_HDRINCL", h, IPPROTO_IP, IP_HDRINCL, 1);
    expect_int("h SO_PROTOCOL", h, SOL_SOCKET, SO_PROTOCOL, IPPROTO_UDP);
    struct icmp6_filter f6, want6;
    ICMP6_FILTER_SETBLOCKALL(&want6);
    ICMP6_FILTER_SETPASS(ICMP6_ECHO_REQUEST, &want6);
    l = sizeof f6;
    if (getsockopt(r6, IPPROTO_ICMPV6, ICMP6_FILTER, &f6, &l) != 0 ||
        memcmp(&f6, &want6, sizeof f6) != 0)
        fail("r6: ICMP6_FILTER differs");

    /* An echo request sent through r (connected: no address given) comes back to it;
     * the reply is filtered out. */
    unsigned char pkt[64] = {ICMP_ECHO, 0};
    memcpy(pkt + 8, "ping-after", 10);
    pkt[4] = 0x12;
    uint16_t c = csum(pkt, 18);
    memcpy(pkt + 2, &c, 2);
    if (send(r, pkt, 18, 0) != 18)
        fail("r: send: %s", strerror(errno));
    unsigned char buf[256];
    if (!readable(r))
        fail("r: no echo request came back");
    else {
        ssize_t n = recv(r, buf, sizeof buf, 0);
        struct iphdr *ip = (void *)buf;
        if (n < 20 + 18 || ip->ttl != 33 || buf[ip->ihl * 4] != ICMP_ECHO ||
            memcmp(buf + ip->ihl * 4 + 8, "ping-after", 10) != 0)
            fail("r: received %zd bytes, ttl %d, type %d", n, ip->ttl, buf[20]);
    }
    if (recv(r, buf, sizeof buf, MSG_DONTWAIT) >= 0)
        fail("r: the echo reply passed the ICMP filter");
}

static void check_ping(int p)
{
    struct sockaddr_in sa;
    socklen_t l = sizeof sa;
    if (getsockname(p, (void *)&sa, &l) != 0)
        die("getsockname(p)");
    if (ntohs(sa.sin_port) != 777 || sa.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
        fail("p: bound to %s id %d", inet_ntoa(sa.sin_addr), ntohs(sa.sin_port));
    expect_int("p IP_RECVERR", p, IPPROTO_IP, IP_RECVERR, 1);
    unsigned char pkt[32] = {ICMP_ECHO, 0};
    memcpy(pkt + 8, "pong-me", 7);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (sendto(p, pkt, 15, 0, (void *)&to, sizeof to) != 15)
        fail("p: sendto: %s", strerror(errno));
    unsigned char buf[64];
    if (!readable(p))
        fail("p: no reply");
    else {
        ssize_t n = recv(p, buf, sizeof buf, 0);
        if (n != 15 || buf[0] != ICMP_ECHOREPLY || memcmp(buf + 8, "pong-me", 7) != 0)
            fail("p: reply of %zd bytes, type %d", n, buf[0]);
    }
}

static void check_ping6(int p6, int r6)
{
    struct sockaddr_in6 sa;
    socklen_t l = sizeof sa;
    if (getsockname(r6, (void *)&sa, &l) != 0)
        die("getsockname(r6)");
    if (!IN6_IS_ADDR_LOOPBACK(&sa.sin6_addr))
        fail("r6: not bound to ::1");
    expect_int("r6 IPV6_RECVPKTINFO", r6, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
    l = sizeof sa;
    if (getsockname(p6, (void *)&sa, &l) != 0)
        die("getsockname(p6)");
    if (ntohs(sa.sin6_port) != 778 || !IN6_IS_ADDR_LOOPBACK(&sa.sin6_addr))
        fail("p6: bound to id %d", ntohs(sa.sin6_port));
    unsigned char pkt[32] = {ICMP6_ECHO_REQUEST, 0};
    memcpy(pkt + 8, "pong-six", 8);
    struct sockaddr_in6 to = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (sendto(p6, pkt, 16, 0, (void *)&to, sizeof to) != 16)
        fail("p6: sendto: %s", strerror(errno));
    unsigned char buf[128];
    if (!readable(p6))
        fail("p6: no reply");
    else {
        ssize_t n = recv(p6, buf, sizeof buf, 0);
        if (n != 16 || buf[0] != ICMP6_ECHO_REPLY || memcmp(buf + 8, "pong-six", 8) != 0)
            fail("p6: reply of %zd bytes, type %d", n, buf[0]);
    }
    /* r6 passes echo requests only: p6's, not the reply. */
    if (!readable(r6))
        fail("r6: no echo request");
    else {
        ssize_t n = recv(r6, buf, sizeof buf, 0);
        if (n != 16 || buf[0] != ICMP6_ECHO_REQUEST || memcmp(buf + 8, "pong-six", 8) != 0)
            fail("r6: %zd bytes, type %d", n, buf[0]);
    }
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
    lo = if_nametoindex("lo");
    if (!lo)
        die("if_nametoindex(lo)");

    int a = packet(SOCK_RAW, 0x88b5, 1);
    set_int(a, SOL_PACKET, PACKET_AUXDATA, 1);
    set_int(a, SOL_PACKET, PACKET_ORIGDEV, 1);
    set_int(a, SOL_PACKET, PACKET_VERSION, TPACKET_V2);
    set_int(a, SOL_PACKET, PACKET_RESERVE, 64);
    set_int(a, SOL_PACKET, PACKET_LOSS, 1);
    set_int(a, SOL_PACKET, PACKET_QDISC_BYPASS, 1);
    set_int(a, SOL_PACKET, PACKET_TIMESTAMP, SOF_TIMESTAMPING_RAW_HARDWARE);
    set_int(a, SOL_SOCKET, SO_PRIORITY, 3);
    set_int(a, SOL_SOCKET, SO_RCVBUF, 100000);
    member(a, PACKET_MR_PROMISC);
    member(a, PACKET_MR_ALLMULTI);

    int b = packet(SOCK_DGRAM, 0x88b6, 1);
    set_int(b, SOL_PACKET, PACKET_FANOUT, 4242 | (PACKET_FANOUT_LB << 16));
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 10, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0xffff),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    struct sock_fprog fp = {.len = 4, .filter = prog};
    if (setsockopt(b, SOL_SOCKET, SO_ATTACH_FILTER, &fp, sizeof fp) != 0)
        die("SO_ATTACH_FILTER");
    set_int(b, SOL_SOCKET, SO_LOCK_FILTER, 1);
    fcntl(b, F_SETFL, O_NONBLOCK);

    int c = socket(AF_PACKET, SOCK_RAW, 0);
    if (c < 0)
        die("socket(c)");

    int r = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    if (r < 0)
        die("socket(raw icmp)");
    struct sockaddr_in loop = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(r, (void *)&loop, sizeof loop) != 0 || connect(r, (void *)&loop, sizeof loop) != 0)
        die("bind/connect(r)");
    set_int(r, IPPROTO_IP, IP_TTL, 33);
    uint32_t filt = ~(1u << ICMP_ECHO);
    if (setsockopt(r, SOL_RAW, ICMP_FILTER, &filt, sizeof filt) != 0)
        die("ICMP_FILTER");
    set_int(r, IPPROTO_IP, IP_RECVTTL, 1);
    set_int(r, SOL_SOCKET, SO_TIMESTAMPNS, 1);
    set_int(r, IPPROTO_IP, IP_MULTICAST_LOOP, 0);

    int h = socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
    if (h < 0)
        die("socket(raw udp)");
    set_int(h, IPPROTO_IP, IP_HDRINCL, 1);

    int r6 = socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
    if (r6 < 0)
        die("socket(raw icmpv6)");
    struct icmp6_filter f6;
    ICMP6_FILTER_SETBLOCKALL(&f6);
    ICMP6_FILTER_SETPASS(ICMP6_ECHO_REQUEST, &f6);
    if (setsockopt(r6, IPPROTO_ICMPV6, ICMP6_FILTER, &f6, sizeof f6) != 0)
        die("ICMP6_FILTER");
    struct sockaddr_in6 loop6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (bind(r6, (void *)&loop6, sizeof loop6) != 0)
        die("bind(r6)");
    set_int(r6, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);

    int p = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    if (p < 0)
        die("socket(ping)");
    struct sockaddr_in pa = loop;
    pa.sin_port = htons(777);
    if (bind(p, (void *)&pa, sizeof pa) != 0)
        die("bind(ping)");
    set_int(p, IPPROTO_IP, IP_RECVERR, 1);
    int p6 = socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6);
    if (p6 < 0)
        die("socket(ping6)");
    struct sockaddr_in6 pa6 = loop6;
    pa6.sin6_port = htons(778);
    if (bind(p6, (void *)&pa6, sizeof pa6) != 0)
        die("bind(ping6)");

    drop_net_raw();
    char one = '.';
    if (write(ack_fd, &one, 1) != 1)
        return 2;
    for (;;) {
        char cmd;
        if (read(ctl, &cmd, 1) != 1)
            return 4;
        if (cmd == 'v') {
            bad = 0;
            check_packet(a, b, c);
            check_raw(r, h, r6);
            check_ping(p);
            check_ping6(p6, r6);
            if (!bad)
                fprintf(out, "ok\n");
            fflush(out);
        } else if (cmd == 'q') {
            if (write(ack_fd, &one, 1) != 1)
                return 2;
            return 0;
        }
        if (write(ack_fd, &one, 1) != 1)
            return 2;
    }
}
