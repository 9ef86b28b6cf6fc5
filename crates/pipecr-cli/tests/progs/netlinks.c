/* netlinks OUT CTL ACK: netlink sockets of several protocols in one process,
 * self-checking, for tests/restore_netlink.rs (run in a network namespace of the test's
 * own).
 *
 * Set up at start, then one ack byte on ACK:
 *   - fd 10, generic (SOCK_RAW): bound (port id chosen by the kernel), every option on
 *     (NETLINK_PKTINFO, NETLINK_BROADCAST_ERROR, NETLINK_NO_ENOBUFS, NETLINK_CAP_ACK,
 *     NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK), in the group "notify" of the family
 *     "nlctrl", whose number it learns by CTRL_CMD_GETFAMILY on this socket;
 *   - fd 11, generic (SOCK_DGRAM): bound to port id 0x5000000 + pid, no option;
 *   - fd 12, route: bound in group RTMGRP_LINK, NETLINK_LISTEN_ALL_NSID on;
 *   - fd 13, sock_diag (SOCK_DGRAM), never bound;
 *   - fd 14, netfilter, bound; fd 15, xfrm, bound; fd 16, connector, bound.
 * OUT gets "ports P10 P11 P12 P14 P15 P16".
 * Per byte read from CTL:
 *   'v'  check from inside: each socket's type, protocol, port id (getsockname),
 *        options (getsockopt) and groups (NETLINK_LIST_MEMBERSHIPS); nothing queued;
 *        fd 10 resolves "nlctrl" again (CTRL_CMD_GETFAMILY: family id 0x10, the same
 *        notify group, an answer from the kernel's port 0 to its own port id); fd 13
 *        answers a sock_diag dump; writes "ok" or what differs to OUT;
 *   'q'  exit 0.
 * Each command is followed by one ack byte. Errors exit with a status above 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/genetlink.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef NETLINK_GET_STRICT_CHK
#define NETLINK_GET_STRICT_CHK 12
#endif

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

static const int options[] = {NETLINK_PKTINFO, NETLINK_BROADCAST_ERROR, NETLINK_NO_ENOBUFS,
                              NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK};
#define N_OPTIONS (int)(sizeof options / sizeof options[0])

static int get_int(int s, int level, int opt)
{
    int v = -1;
    socklen_t l = sizeof v;
    if (getsockopt(s, level, opt, &v, &l) != 0)
        die("getsockopt");
    return v;
}

static void set_int(int s, int level, int opt, int v)
{
    if (setsockopt(s, level, opt, &v, sizeof v) != 0)
        die("setsockopt");
}

static unsigned port_of(int s)
{
    struct sockaddr_nl a;
    socklen_t l = sizeof a;
    if (getsockname(s, (void *)&a, &l) != 0)
        die("getsockname");
    return a.nl_pid;
}

/* Makes a netlink socket of TYPE and PROTO at fd AT, bound to PORT (0: chosen by the
 * kernel) and GROUPS, unless BIND is 0. */
static int nl(int at, int type, int proto, int bind_it, unsigned port, unsigned groups)
{
    int s = socket(AF_NETLINK, type, proto);
    if (s < 0)
        die("socket");
    if (dup2(s, at) != at)
        die("dup2");
    close(s);
    if (bind_it) {
        struct sockaddr_nl a = {.nl_family = AF_NETLINK, .nl_pid = port, .nl_groups = groups};
        if (bind(at, (void *)&a, sizeof a) != 0)
            die("bind");
    }
    return at;
}

/* CTRL_CMD_GETFAMILY "nlctrl" on S; returns the family id and sets *notify to the
 * number of its "notify" group; checks the answer came from port 0 to S's port. */
static int resolve_nlctrl(int s, unsigned *notify)
{
    struct {
        struct nlmsghdr h;
        struct genlmsghdr g;
        char attrs[64];
    } req;
    memset(&req, 0, sizeof req);
    struct nlattr *a = (void *)req.attrs;
    a->nla_type = CTRL_ATTR_FAMILY_NAME;
    a->nla_len = NLA_HDRLEN + sizeof "nlctrl";
    memcpy((char *)a + NLA_HDRLEN, "nlctrl", sizeof "nlctrl");
    req.h.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN + NLA_ALIGN(a->nla_len));
    req.h.nlmsg_type = GENL_ID_CTRL;
    req.h.nlmsg_flags = NLM_F_REQUEST;
    req.h.nlmsg_seq = 7;
    req.g.cmd = CTRL_CMD_GETFAMILY;
    req.g.version = 1;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(s, &req, req.h.nlmsg_len, 0, (void *)&kernel, sizeof kernel) < 0)
        die("send CTRL_CMD_GETFAMILY");
    static char buf[16384];
    struct sockaddr_nl from;
    struct iovec iov = {buf, sizeof buf};
    char cbuf[256];
    struct msghdr m = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov,
                       .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    ssize_t n = recvmsg(s, &m, 0);
    if (n < 0)
        die("recv CTRL_CMD_GETFAMILY");
    if (from.nl_pid != 0)
        fail("the answer came from port %u, not the kernel's", from.nl_pid);
    struct nlmsghdr *h = (void *)buf;
    if (!NLMSG_OK(h, n) || h->nlmsg_type != GENL_ID_CTRL || h->nlmsg_seq != 7 ||
        h->nlmsg_pid != port_of(s)) {
        fail("CTRL_CMD_GETFAMILY: type %u seq %u pid %u (port %u)", h->nlmsg_type,
             h->nlmsg_seq, h->nlmsg_pid, port_of(s));
        return -1;
    }
    int family = -1;
    *notify = 0;
    char *p = (char *)NLMSG_DATA(h) + GENL_HDRLEN;
    char *end = (char *)h + h->nlmsg_len;
    while (p + NLA_HDRLEN <= end) {
        struct nlattr *at = (void *)p;
        int type = at->nla_type & NLA_TYPE_MASK;
        if (type == CTRL_ATTR_FAMILY_ID)
            family = *(uint16_t *)((char *)at + NLA_HDRLEN);
        if (type == CTRL_ATTR_MCAST_GROUPS) {
            char *q = (char *)at + NLA_HDRLEN, *qend = (char *)at + at->nla_len;
            while (q + NLA_HDRLEN <= qend) {
                struct nlattr *grp = (void *)q;
                char *r = (char *)grp + NLA_HDRLEN, *rend = (char *)grp + grp->nla_len;
                unsigned id = 0;
                const char *name = "";
                while (r + NLA_HDRLEN <= rend) {
                    struct nlattr *f = (void *)r;
                    if ((f->nla_type & NLA_TYPE_MASK) == CTRL_ATTR_MCAST_GRP_ID)
                        id = *(uint32_t *)((char *)f + NLA_HDRLEN);
                    if ((f->nla_type & NLA_TYPE_MASK) == CTRL_ATTR_MCAST_GRP_NAME)
                        name = (char *)f + NLA_HDRLEN;
                    r += NLA_ALIGN(f->nla_len);
                }
                if (strcmp(name, "notify") == 0)
                    *notify = id;
                q += NLA_ALIGN(grp->nla_len);
            }
        }
        p += NLA_ALIGN(at->nla_len);
    }
    return family;
}

static uint32_t memberships(int s)
{
    uint32_t words[4] = {0};
    socklen_t l = sizeof words;
    if (getsockopt(s, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, words, &l) != 0)
        die("NETLINK_LIST_MEMBERSHIPS");
    return words[0];
}

static void expect_empty(int s, const char *name)
{
    char b[64];
    ssize_t n = recv(s, b, sizeof b, MSG_PEEK | MSG_DONTWAIT);
    if (n >= 0 || errno != EAGAIN)
        fail("%s: something is queued (%zd)", name, n);
}

static void check_socket(int s, int type, int proto, unsigned port, const char *name)
{
    if (get_int(s, SOL_SOCKET, SO_TYPE) != type)
        fail("%s: type %d", name, get_int(s, SOL_SOCKET, SO_TYPE));
    if (get_int(s, SOL_SOCKET, SO_PROTOCOL) != proto)
        fail("%s: protocol %d", name, get_int(s, SOL_SOCKET, SO_PROTOCOL));
    if (port_of(s) != port)
        fail("%s: port id %u, want %u", name, port_of(s), port);
    expect_empty(s, name);
}

/* A sock_diag dump of the TCP sockets on S: the answer ends with NLMSG_DONE. */
static void sock_diag_answers(int s)
{
    struct {
        struct nlmsghdr h;
        struct inet_diag_req_v2 r;
    } req;
    memset(&req, 0, sizeof req);
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.r.sdiag_family = AF_INET;
    req.r.sdiag_protocol = IPPROTO_TCP;
    req.r.idiag_states = ~0u;
    if (send(s, &req, sizeof req, 0) < 0) {
        fail("sock_diag: send: %s", strerror(errno));
        return;
    }
    static char buf[65536];
    for (;;) {
        ssize_t n = recv(s, buf, sizeof buf, 0);
        if (n <= 0) {
            fail("sock_diag: recv: %s", strerror(errno));
            return;
        }
        for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE)
                return;
            if (h->nlmsg_type == NLMSG_ERROR) {
                fail("sock_diag: error answer");
                return;
            }
        }
    }
}

static void ack(int fd)
{
    if (write(fd, "k", 1) != 1)
        die("ack");
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    out = fopen(argv[1], "w");
    int ctl = open(argv[2], O_RDONLY);
    int ack_fd = open(argv[3], O_WRONLY);
    if (!out || ctl < 0 || ack_fd < 0)
        return 2;

    int g1 = nl(10, SOCK_RAW, NETLINK_GENERIC, 1, 0, 0);
    for (int i = 0; i < N_OPTIONS; i++)
        set_int(g1, SOL_NETLINK, options[i], 1);
    unsigned notify = 0;
    if (resolve_nlctrl(g1, &notify) != GENL_ID_CTRL || notify == 0)
        die("resolve nlctrl");
    set_int(g1, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, (int)notify);
    unsigned g2_port = 0x5000000 + (unsigned)getpid();
    int g2 = nl(11, SOCK_DGRAM, NETLINK_GENERIC, 1, g2_port, 0);
    int rt = nl(12, SOCK_RAW, NETLINK_ROUTE, 1, 0, RTMGRP_LINK);
    set_int(rt, SOL_NETLINK, NETLINK_LISTEN_ALL_NSID, 1);
    int diag = nl(13, SOCK_DGRAM, NETLINK_SOCK_DIAG, 0, 0, 0);
    int nf = nl(14, SOCK_RAW, NETLINK_NETFILTER, 1, 0, 0);
    int xf = nl(15, SOCK_RAW, NETLINK_XFRM, 1, 0, 0);
    int cn = nl(16, SOCK_DGRAM, NETLINK_CONNECTOR, 1, 0, 0);
    unsigned ports[7] = {port_of(g1), port_of(g2), port_of(rt), 0,
                         port_of(nf), port_of(xf), port_of(cn)};
    fprintf(out, "ports %u %u %u %u %u %u\n", ports[0], ports[1], ports[2], ports[4], ports[5],
            ports[6]);
    fflush(out);
    ack(ack_fd);

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
        check_socket(g1, SOCK_RAW, NETLINK_GENERIC, ports[0], "generic raw");
        check_socket(g2, SOCK_DGRAM, NETLINK_GENERIC, ports[1], "generic dgram");
        check_socket(rt, SOCK_RAW, NETLINK_ROUTE, ports[2], "route");
        check_socket(diag, SOCK_DGRAM, NETLINK_SOCK_DIAG, 0, "sock_diag");
        check_socket(nf, SOCK_RAW, NETLINK_NETFILTER, ports[4], "netfilter");
        check_socket(xf, SOCK_RAW, NETLINK_XFRM, ports[5], "xfrm");
        check_socket(cn, SOCK_DGRAM, NETLINK_CONNECTOR, ports[6], "connector");
        for (int i = 0; i < N_OPTIONS; i++) {
            if (get_int(g1, SOL_NETLINK, options[i]) != 1)
                fail("generic raw: option %d is off", options[i]);
            if (get_int(g2, SOL_NETLINK, options[i]) != 0)
                fail("generic dgram: option %d is on", options[i]);
        }
        if (get_int(rt, SOL_NETLINK, NETLINK_LISTEN_ALL_NSID) != 1)
            fail("route: NETLINK_LISTEN_ALL_NSID is off");
        if (memberships(rt) != RTMGRP_LINK)
            fail("route: groups %#x", memberships(rt));
        if (memberships(g2) != 0)
            fail("generic dgram: groups %#x", memberships(g2));
        unsigned now = 0;
        int family = resolve_nlctrl(g1, &now);
        if (family != GENL_ID_CTRL || now != notify)
            fail("nlctrl: family %d group %u, want %d and %u", family, now, GENL_ID_CTRL, notify);
        if (memberships(g1) != 1u << (notify - 1))
            fail("generic raw: groups %#x, want %#x", memberships(g1), 1u << (notify - 1));
        expect_empty(g1, "generic raw after its answer");
        sock_diag_answers(diag);
        if (!bad)
            fprintf(out, "ok\n");
        fflush(out);
        ack(ack_fd);
    }
}
