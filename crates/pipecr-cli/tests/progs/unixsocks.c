#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
/* argv: OUT CTL ACK MODE DIR [PEER]. A parent and a child holding unix sockets of one
   family of shapes (MODE), set up, then checked from inside after a restore.
   Both print to OUT (opened O_APPEND). Once set up, the parent prints "ready" and
   writes one byte to ACK; then it reads one byte from CTL: 'v' verifies (the child first,
   told through a pipe, then the parent), prints "FAIL: ..." for each difference and
   finally "done ok" or "done failed", acks and exits 0 (1 if anything failed).
   Names are unique per run: paths under DIR, abstract names with the parent's pid.

   MODE stream: a listener on DIR/l.sock (backlog 7); the child's client, bound to an
     abstract name, connected and accepted, bytes queued both ways; a second client of
     the child waiting in the backlog with bytes sent; a third that sent "last" and shut
     down its writing side, accepted; a listener on DIR/gone.sock, removed after bind,
     with a connection of the child waiting; a stream socket bound to DIR/idle.sock that
     never connected; an unnamed one never bound.
   MODE dgram: the parent's datagram socket bound to an abstract name, with messages
     from the child's named socket, from the child's unnamed one, and from a socket of
     the child connected to it; a seqpacket pair, messages both ways, the child's end
     shut down for writing after its messages.
   MODE rights: a stream pair; the child sends the parent, in one message with
     SCM_RIGHTS, the read end of a pipe holding bytes (its other end closed), an
     unnamed stream socket holding bytes from its peer (closed since), and the parent's
     own end of the pair; the parent sends the child bytes with its credentials
     (SCM_CREDENTIALS), and the child has SO_PASSCRED.
   MODE options: a stream pair with options on the parent's end: SO_SNDBUF, SO_RCVBUF,
     SO_PEEK_OFF 2, SO_RCVLOWAT 3, SO_RCVTIMEO 1.5 s, SO_SNDTIMEO 2.5 s, O_NONBLOCK |
     O_ASYNC owned by the child (F_SETOWN_EX) with signal SIGRTMIN+1 (F_SETSIG); a pipe
     read end with O_ASYNC owned by the parent with SIGIO. After the restore the child
     writes into the pair: its handler sees SIGRTMIN+1 from the socket (si_fd).
   MODE external: the parent connects a stream socket to PEER (a listener outside the
     tree) and sends "before". After the restore it sends "after" on the same
     descriptor, reads the peer's answer and checks getpeername is PEER (unless the
     seventh argument is "anypeer": a descriptor given in its place). */

static int failed;
static int ack_fd = -1;
static char dir[512];

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char line[600];
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    dprintf(1, "FAIL: %s\n", line);
    failed = 1;
}

static void die(const char *what) {
    dprintf(1, "setup: %s: %s\n", what, strerror(errno));
    _exit(2);
}

static socklen_t path_addr(struct sockaddr_un *a, const char *name) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof a->sun_path, "%s/%s", dir, name);
    return sizeof *a;
}

static socklen_t abstract_addr(struct sockaddr_un *a, const char *tag, pid_t pid) {
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    int n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "pipecr-us-%d-%s", (int)pid, tag);
    return offsetof(struct sockaddr_un, sun_path) + 1 + n;
}

/* The name of a socket address as a string: a path, "@name", or "" when unnamed. */
static const char *show(const struct sockaddr_un *a, socklen_t len) {
    static char s[2][200];
    static int k;
    char *o = s[k++ & 1];
    size_t n = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
    if (n == 0) {
        o[0] = 0;
    } else if (a->sun_path[0] == 0) {
        snprintf(o, 200, "@%.*s", (int)n - 1, a->sun_path + 1);
    } else {
        snprintf(o, 200, "%s", a->sun_path);
    }
    return o;
}

static const char *own_name(int fd) {
    struct sockaddr_un a;
    socklen_t l = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &l))
        return "(error)";
    return show(&a, l);
}

static const char *peer_name(int fd) {
    struct sockaddr_un a;
    socklen_t l = sizeof a;
    if (getpeername(fd, (struct sockaddr *)&a, &l))
        return "(none)";
    return show(&a, l);
}

static void expect_name(const char *what, const char *got, const char *want) {
    if (strcmp(got, want))
        fail("%s: got %s, want %s", what, got, want);
}

/* Reads exactly `want` (non-blocking: it must all be queued already). */
static void expect_bytes(const char *what, int fd, const char *want) {
    char buf[256];
    size_t n = strlen(want), got = 0;
    while (got < n) {
        ssize_t r = recv(fd, buf + got, n - got, MSG_DONTWAIT);
        if (r <= 0) {
            fail("%s: got %zu bytes (%s), want \"%s\"", what, got, r < 0 ? strerror(errno) : "eof", want);
            return;
        }
        got += r;
    }
    if (memcmp(buf, want, n))
        fail("%s: got \"%.*s\", want \"%s\"", what, (int)n, buf, want);
}

static void expect_eof(const char *what, int fd) {
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
    if (r != 0)
        fail("%s: want end of file, got %zd (%s)", what, r, r < 0 ? strerror(errno) : "data");
}

static void expect_empty(const char *what, int fd) {
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
    if (!(r < 0 && errno == EAGAIN))
        fail("%s: want nothing queued, got %zd", what, r);
}

/* One datagram with its sender. */
static void expect_dgram(const char *what, int fd, const char *want, const char *from) {
    char buf[256];
    struct sockaddr_un a;
    socklen_t l = sizeof a;
    ssize_t r = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&a, &l);
    if (r < 0) {
        fail("%s: %s", what, strerror(errno));
        return;
    }
    if ((size_t)r != strlen(want) || memcmp(buf, want, r))
        fail("%s: got \"%.*s\" (%zd bytes), want \"%s\"", what, (int)r, buf, r, want);
    if (from)
        expect_name(what, show(&a, l), from);
}

static int int_opt(int fd, int name) {
    int v = -12345;
    socklen_t l = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, name, &v, &l))
        fail("getsockopt %d: %s", name, strerror(errno));
    return v;
}

static long timeo_us(int fd, int name) {
    struct timeval tv = {0};
    socklen_t l = sizeof tv;
    getsockopt(fd, SOL_SOCKET, name, &tv, &l);
    return tv.tv_sec * 1000000L + tv.tv_usec;
}

static int sock(int type) {
    int fd = socket(AF_UNIX, type, 0);
    if (fd < 0)
        die("socket");
    return fd;
}

/* ---- state of each mode, kept in globals: the same after the restore ---- */
static pid_t parent_pid, child_pid;
static int go_r, go_w, res_r, res_w;
static int fds[16];
static char pathbuf[3][300];
static int sndbuf_set, rcvbuf_set;

static void on_sig(int s, siginfo_t *si, void *u) {
    (void)s;
    (void)si;
    (void)u;
}

static void send_creds(int fd, const char *bytes) {
    struct iovec iov = {(void *)bytes, strlen(bytes)};
    char c[CMSG_SPACE(sizeof(struct ucred))];
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = c;
    m.msg_controllen = sizeof c;
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_CREDENTIALS;
    h->cmsg_len = CMSG_LEN(sizeof(struct ucred));
    struct ucred u = {getpid(), getuid(), getgid()};
    memcpy(CMSG_DATA(h), &u, sizeof u);
    if (sendmsg(fd, &m, 0) < 0)
        die("sendmsg creds");
}

static void send_fds(int fd, const char *bytes, int *list, int n) {
    struct iovec iov = {(void *)bytes, strlen(bytes)};
    char c[CMSG_SPACE(sizeof(int) * 8)];
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = c;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(h), list, sizeof(int) * n);
    if (sendmsg(fd, &m, 0) < 0)
        die("sendmsg rights");
}

/* Receives one message with descriptors and credentials. */
static ssize_t recv_all(int fd, char *buf, size_t len, int *got, int *nfds, struct ucred *cred) {
    struct iovec iov = {buf, len};
    char c[1024];
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = c;
    m.msg_controllen = sizeof c;
    ssize_t r = recvmsg(fd, &m, MSG_DONTWAIT);
    *nfds = 0;
    if (cred)
        memset(cred, 0, sizeof *cred);
    if (r < 0)
        return r;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
        if (h->cmsg_type == SCM_RIGHTS) {
            *nfds = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            memcpy(got, CMSG_DATA(h), *nfds * sizeof(int));
        } else if (h->cmsg_type == SCM_CREDENTIALS && cred) {
            memcpy(cred, CMSG_DATA(h), sizeof *cred);
        }
    }
    return r;
}

/* ---- stream ---- */
static void stream_child_setup(void) {
    struct sockaddr_un a;
    socklen_t al;
    int c1 = sock(SOCK_STREAM);
    al = abstract_addr(&a, "client", parent_pid);
    if (bind(c1, (struct sockaddr *)&a, al))
        die("bind client");
    path_addr(&a, "l.sock");
    if (connect(c1, (struct sockaddr *)&a, sizeof a))
        die("connect c1");
    send(c1, "to-server", 9, 0);
    fds[0] = c1;
    /* Accepted by the parent before the next ones connect (it waits on res). */
    char b;
    write(res_w, "1", 1);
    read(go_r, &b, 1);
    int c2 = sock(SOCK_STREAM);
    if (connect(c2, (struct sockaddr *)&a, sizeof a))
        die("connect c2");
    send(c2, "waiting-data", 12, 0);
    fds[1] = c2;
    int c3 = sock(SOCK_STREAM);
    if (connect(c3, (struct sockaddr *)&a, sizeof a))
        die("connect c3");
    send(c3, "last", 4, 0);
    shutdown(c3, SHUT_WR);
    fds[2] = c3;
    path_addr(&a, "gone.sock");
    int c4 = sock(SOCK_STREAM);
    if (connect(c4, (struct sockaddr *)&a, sizeof a))
        die("connect c4");
    send(c4, "gone-data", 9, 0);
    fds[3] = c4;
}

static void stream_parent_setup(void) {
    struct sockaddr_un a;
    char b;
    int l = sock(SOCK_STREAM);
    path_addr(&a, "l.sock");
    snprintf(pathbuf[0], sizeof pathbuf[0], "%s", a.sun_path);
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 7))
        die("listen l");
    fds[0] = l;
    int g = sock(SOCK_STREAM);
    path_addr(&a, "gone.sock");
    snprintf(pathbuf[1], sizeof pathbuf[1], "%s", a.sun_path);
    if (bind(g, (struct sockaddr *)&a, sizeof a) || listen(g, 3))
        die("listen g");
    fds[1] = g;
    int idle = sock(SOCK_STREAM);
    path_addr(&a, "idle.sock");
    snprintf(pathbuf[2], sizeof pathbuf[2], "%s", a.sun_path);
    if (bind(idle, (struct sockaddr *)&a, sizeof a))
        die("bind idle");
    fds[2] = idle;
    fds[3] = sock(SOCK_STREAM);
    /* The child connects its first client: accept it. */
    write(go_w, "s", 1);
    read(res_r, &b, 1);
    fds[4] = accept(l, NULL, NULL);
    if (fds[4] < 0)
        die("accept");
    send(fds[4], "to-client", 9, 0);
    write(go_w, "s", 1);
    read(res_r, &b, 1);
    /* Its socket file goes: the listener keeps the name, and its waiting connection. */
    unlink(pathbuf[1]);
}

static void stream_child_verify(void) {
    expect_bytes("client reads what the accepted end sent", fds[0], "to-client");
    expect_empty("client queue", fds[0]);
    char want[300];
    snprintf(want, sizeof want, "@pipecr-us-%d-client", (int)parent_pid);
    expect_name("client getsockname", own_name(fds[0]), want);
    expect_name("client getpeername", peer_name(fds[0]), pathbuf[0]);
    /* c3 shut down its writing side: still reads what the server answers. */
    if (send(fds[2], "x", 1, MSG_NOSIGNAL) >= 0 || errno != EPIPE)
        fail("c3 shut down for writing: send should fail with EPIPE");
    if (send(fds[0], "again", 5, 0) != 5)
        fail("client send after restore: %s", strerror(errno));
}

static void stream_parent_verify(void) {
    int l = fds[0], g = fds[1];
    /* Blocking, as they were set up; accept without waiting from here on. */
    if ((fcntl(l, F_GETFL) & O_NONBLOCK) || (fcntl(g, F_GETFL) & O_NONBLOCK))
        fail("a listener became non-blocking");
    fcntl(l, F_SETFL, O_NONBLOCK);
    fcntl(g, F_SETFL, O_NONBLOCK);
    expect_name("listener getsockname", own_name(l), pathbuf[0]);
    if (int_opt(l, SO_ACCEPTCONN) != 1)
        fail("listener: SO_ACCEPTCONN is not 1");
    expect_name("accepted getsockname", own_name(fds[4]), pathbuf[0]);
    char want[300];
    snprintf(want, sizeof want, "@pipecr-us-%d-client", (int)parent_pid);
    expect_name("accepted getpeername", peer_name(fds[4]), want);
    expect_bytes("accepted reads what the client sent", fds[4], "to-server");
    /* Two connections wait, in order: c2 with its bytes, then c3 with "last" and EOF. */
    int w2 = accept4(l, NULL, NULL, SOCK_NONBLOCK);
    int w3 = accept4(l, NULL, NULL, SOCK_NONBLOCK);
    if (w2 < 0 || w3 < 0) {
        fail("accept after restore: %s", strerror(errno));
    } else {
        /* (Their clients are gone by now: the child exited after its checks.) */
        expect_bytes("first waiting connection", w2, "waiting-data");
        expect_bytes("second waiting connection", w3, "last");
        expect_eof("second waiting connection (client shut down)", w3);
    }
    if (accept4(l, NULL, NULL, SOCK_NONBLOCK) >= 0 || errno != EAGAIN)
        fail("a third waiting connection appeared");
    /* The listener bound to a removed path. */
    struct stat st;
    if (stat(pathbuf[1], &st) == 0 || errno != ENOENT)
        fail("%s exists again after the restore", pathbuf[1]);
    expect_name("gone listener getsockname", own_name(g), pathbuf[1]);
    int w4 = accept4(g, NULL, NULL, SOCK_NONBLOCK);
    if (w4 < 0)
        fail("accept on gone listener: %s", strerror(errno));
    else
        expect_bytes("connection waiting on the removed path", w4, "gone-data");
    expect_name("idle getsockname", own_name(fds[2]), pathbuf[2]);
    if (int_opt(fds[2], SO_ACCEPTCONN) != 0)
        fail("idle socket listens");
    if (stat(pathbuf[2], &st) || !S_ISSOCK(st.st_mode))
        fail("%s: not a socket file after restore", pathbuf[2]);
    expect_name("unnamed socket getsockname", own_name(fds[3]), "");
    expect_name("unnamed socket getpeername", peer_name(fds[3]), "(none)");
    /* The child sent "again" once it verified (it runs first). */
    char c;
    if (recv(fds[4], &c, 1, MSG_PEEK) != 1)
        fail("accepted: the client's new bytes did not arrive");
    else
        expect_bytes("bytes sent after the restore", fds[4], "again");
}

/* ---- dgram ---- */
static void dgram_child_setup(void) {
    struct sockaddr_un a, to;
    socklen_t tl = abstract_addr(&to, "dgram", parent_pid);
    int named = sock(SOCK_DGRAM);
    socklen_t al = abstract_addr(&a, "sender", parent_pid);
    if (bind(named, (struct sockaddr *)&a, al))
        die("bind sender");
    int unnamed = sock(SOCK_DGRAM);
    int conn = sock(SOCK_DGRAM);
    if (connect(conn, (struct sockaddr *)&to, tl))
        die("connect dgram");
    sendto(named, "one", 3, 0, (struct sockaddr *)&to, tl);
    sendto(unnamed, "two!", 4, 0, (struct sockaddr *)&to, tl);
    send(conn, "three", 5, 0);
    sendto(named, "", 0, 0, (struct sockaddr *)&to, tl);
    fds[0] = named;
    fds[1] = unnamed;
    fds[2] = conn;
    /* fds[3]: the child's end of the seqpacket pair (inherited). */
    send(fds[3], "sp-1", 4, 0);
    send(fds[3], "sp-22", 5, 0);
    shutdown(fds[3], SHUT_WR);
}

static void dgram_parent_setup(void) {
    struct sockaddr_un a;
    socklen_t al = abstract_addr(&a, "dgram", parent_pid);
    int d = sock(SOCK_DGRAM);
    if (bind(d, (struct sockaddr *)&a, al))
        die("bind dgram");
    fds[4] = d;
    send(fds[5], "to-child-a", 10, 0);
    send(fds[5], "b", 1, 0);
    char b;
    write(go_w, "s", 1);
    read(res_r, &b, 1);
}

static void dgram_child_verify(void) {
    expect_dgram("seqpacket message 1 to the child", fds[3], "to-child-a", NULL);
    expect_dgram("seqpacket message 2 to the child", fds[3], "b", NULL);
    char want[200];
    snprintf(want, sizeof want, "@pipecr-us-%d-dgram", (int)parent_pid);
    expect_name("connected datagram socket getpeername", peer_name(fds[2]), want);
    if (send(fds[2], "four", 4, 0) != 4)
        fail("send on the connected datagram socket: %s", strerror(errno));
    if (send(fds[3], "x", 1, MSG_NOSIGNAL) >= 0)
        fail("the seqpacket end shut down for writing could send");
}

static void dgram_parent_verify(void) {
    char sender[200], own[200];
    snprintf(sender, sizeof sender, "@pipecr-us-%d-sender", (int)parent_pid);
    snprintf(own, sizeof own, "@pipecr-us-%d-dgram", (int)parent_pid);
    expect_name("datagram getsockname", own_name(fds[4]), own);
    expect_dgram("datagram 1", fds[4], "one", sender);
    expect_dgram("datagram 2", fds[4], "two!", "");
    expect_dgram("datagram 3", fds[4], "three", "");
    expect_dgram("datagram 4 (empty)", fds[4], "", sender);
    expect_dgram("datagram sent after the restore", fds[4], "four", "");
    expect_empty("datagram queue", fds[4]);
    expect_dgram("seqpacket message 1 to the parent", fds[5], "sp-1", NULL);
    expect_dgram("seqpacket message 2 to the parent", fds[5], "sp-22", NULL);
    expect_eof("seqpacket end after the child shut down", fds[5]);
}

/* ---- rights ---- */
static void rights_child_setup(void) {
    int p[2], sp[2];
    if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, sp))
        die("pipe");
    write(p[1], "in-the-pipe", 11);
    close(p[1]);
    send(sp[1], "in-the-socket", 13, 0);
    close(sp[1]);
    int list[3] = {p[0], sp[0], fds[0]};
    /* fds[0] is the child's end; the parent's own end goes in the parent's queue: the
       child has a copy of it (fds[1], inherited) to send. */
    list[2] = fds[1];
    send_fds(fds[0], "here", list, 3);
    close(p[0]);
    close(sp[0]);
    close(fds[1]);
    int on = 1;
    setsockopt(fds[0], SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
}

static void rights_parent_setup(void) {
    char b;
    write(go_w, "s", 1);
    read(res_r, &b, 1);
    send_creds(fds[1], "with-creds");
}

static void rights_child_verify(void) {
    char buf[64];
    int got[8], n;
    struct ucred c;
    ssize_t r = recv_all(fds[0], buf, sizeof buf, got, &n, &c);
    if (r != 10 || memcmp(buf, "with-creds", 10))
        fail("child: the message with credentials: got %zd bytes", r);
    else if (c.pid != parent_pid || c.uid != getuid() || c.gid != getgid())
        fail("child: credentials pid %d uid %d gid %d, want %d %d %d", c.pid, c.uid, c.gid,
             (int)parent_pid, (int)getuid(), (int)getgid());
}

static void rights_parent_verify(void) {
    char buf[64];
    int got[8], n;
    ssize_t r = recv_all(fds[1], buf, sizeof buf, got, &n, NULL);
    if (r != 4 || memcmp(buf, "here", 4) || n != 3) {
        fail("parent: the message with descriptors: %zd bytes, %d descriptors", r, n);
        return;
    }
    char data[64];
    ssize_t k = read(got[0], data, sizeof data);
    if (k != 11 || memcmp(data, "in-the-pipe", 11))
        fail("pipe in flight: read %zd", k);
    if (read(got[0], data, 1) != 0)
        fail("pipe in flight: want end of file (its writer was closed)");
    expect_bytes("socket in flight", got[1], "in-the-socket");
    expect_eof("socket in flight (its peer was closed)", got[1]);
    struct stat a, b;
    fstat(got[2], &a);
    fstat(fds[1], &b);
    if (a.st_ino != b.st_ino)
        fail("the socket queued in its own queue is another socket");
}

/* ---- options ---- */
static void options_child_setup(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_sig;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGRTMIN + 1, &sa, NULL);
    char b;
    write(res_w, "r", 1);
    read(go_r, &b, 1);
}

static void options_parent_setup(void) {
    char b;
    read(res_r, &b, 1);
    int s = fds[1];
    int v = 50000;
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    v = 70000;
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
    sndbuf_set = int_opt(s, SO_SNDBUF);
    rcvbuf_set = int_opt(s, SO_RCVBUF);
    v = 2;
    setsockopt(s, SOL_SOCKET, SO_PEEK_OFF, &v, sizeof v);
    v = 3;
    setsockopt(s, SOL_SOCKET, SO_RCVLOWAT, &v, sizeof v);
    struct timeval tv = {1, 500000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    tv.tv_sec = 2;
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct f_owner_ex o = {F_OWNER_PID, child_pid};
    if (fcntl(s, F_SETOWN_EX, &o) || fcntl(s, F_SETSIG, SIGRTMIN + 1) ||
        fcntl(s, F_SETFL, O_NONBLOCK | O_ASYNC))
        die("fcntl socket");
    int p[2];
    if (pipe(p))
        die("pipe");
    fds[2] = p[0];
    fds[3] = p[1];
    o.type = F_OWNER_PID;
    o.pid = getpid();
    if (fcntl(p[0], F_SETOWN_EX, &o) || fcntl(p[0], F_SETFL, O_ASYNC))
        die("fcntl pipe");
    write(go_w, "s", 1);
}

static void options_child_verify(void) {
    /* The parent's end is owned by us: our bytes make the kernel signal us. */
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &m, NULL);
    if (send(fds[0], "abc", 3, 0) != 3)
        fail("child send: %s", strerror(errno));
    siginfo_t si;
    struct timespec ts = {10, 0};
    if (sigtimedwait(&m, &si, &ts) != SIGRTMIN + 1)
        fail("child: no SIGRTMIN+1 for the socket it owns");
    else if (si.si_fd != fds[1])
        fail("child: signal for fd %d, want %d", si.si_fd, fds[1]);
}

static void options_parent_verify(void) {
    int s = fds[1];
    if (int_opt(s, SO_SNDBUF) != sndbuf_set)
        fail("SO_SNDBUF %d, want %d", int_opt(s, SO_SNDBUF), sndbuf_set);
    if (int_opt(s, SO_RCVBUF) != rcvbuf_set)
        fail("SO_RCVBUF %d, want %d", int_opt(s, SO_RCVBUF), rcvbuf_set);
    if (int_opt(s, SO_PEEK_OFF) != 2)
        fail("SO_PEEK_OFF %d, want 2", int_opt(s, SO_PEEK_OFF));
    if (int_opt(s, SO_RCVLOWAT) != 3)
        fail("SO_RCVLOWAT %d, want 3", int_opt(s, SO_RCVLOWAT));
    if (timeo_us(s, SO_RCVTIMEO) != 1500000)
        fail("SO_RCVTIMEO %ld us, want 1500000", timeo_us(s, SO_RCVTIMEO));
    if (timeo_us(s, SO_SNDTIMEO) != 2500000)
        fail("SO_SNDTIMEO %ld us, want 2500000", timeo_us(s, SO_SNDTIMEO));
    int fl = fcntl(s, F_GETFL);
    if ((fl & (O_NONBLOCK | O_ASYNC)) != (O_NONBLOCK | O_ASYNC))
        fail("socket flags %#x lack O_NONBLOCK|O_ASYNC", fl);
    struct f_owner_ex o;
    fcntl(s, F_GETOWN_EX, &o);
    if (o.type != F_OWNER_PID || o.pid != child_pid)
        fail("socket owner %d/%d, want the child %d", o.type, o.pid, (int)child_pid);
    if (fcntl(s, F_GETSIG) != SIGRTMIN + 1)
        fail("socket F_GETSIG %d", fcntl(s, F_GETSIG));
    fcntl(fds[2], F_GETOWN_EX, &o);
    if (o.pid != getpid() || !(fcntl(fds[2], F_GETFL) & O_ASYNC) || fcntl(fds[2], F_GETSIG) != 0)
        fail("pipe owner %d, flags %#x", o.pid, fcntl(fds[2], F_GETFL));
    /* The child's "abc" arrived; the peek offset (2) skips two bytes. */
    char buf[8];
    ssize_t r = recv(s, buf, sizeof buf, MSG_PEEK);
    if (r != 1 || buf[0] != 'c')
        fail("peek at offset 2: got %zd", r);
}

/* ---- external ---- */
static char peer_path[300];
static int any_peer;

static void external_parent_setup(void) {
    struct sockaddr_un a = {0};
    a.sun_family = AF_UNIX;
    snprintf(a.sun_path, sizeof a.sun_path, "%s", peer_path);
    int s = sock(SOCK_STREAM);
    if (connect(s, (struct sockaddr *)&a, sizeof a))
        die("connect external");
    send(s, "before", 6, 0);
    fds[0] = s;
}

static void external_parent_verify(void) {
    if (send(fds[0], "after", 5, MSG_NOSIGNAL) != 5) {
        fail("send after restore: %s", strerror(errno));
        return;
    }
    char buf[16];
    ssize_t r = recv(fds[0], buf, sizeof buf, 0);
    if (r != 2 || memcmp(buf, "ok", 2))
        fail("the peer's answer: %zd", r);
    if (!any_peer)
        expect_name("reconnected getpeername", peer_name(fds[0]), peer_path);
}

int main(int argc, char **argv) {
    if (argc < 6)
        return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0)
        return 2;
    close(out);
    const char *mode = argv[4];
    snprintf(dir, sizeof dir, "%s", argv[5]);
    if (argc > 6)
        snprintf(peer_path, sizeof peer_path, "%s", argv[6]);
    any_peer = argc > 7 && !strcmp(argv[7], "anypeer");
    parent_pid = getpid();
    struct sockaddr_un pa;
    path_addr(&pa, "l.sock");
    snprintf(pathbuf[0], sizeof pathbuf[0], "%s", pa.sun_path);
    path_addr(&pa, "gone.sock");
    snprintf(pathbuf[1], sizeof pathbuf[1], "%s", pa.sun_path);
    path_addr(&pa, "idle.sock");
    snprintf(pathbuf[2], sizeof pathbuf[2], "%s", pa.sun_path);
    int go[2], res[2];
    if (pipe(go) || pipe(res))
        return 2;
    go_r = go[0], go_w = go[1], res_r = res[0], res_w = res[1];
    int pair[2] = {-1, -1};
    if (!strcmp(mode, "dgram") && socketpair(AF_UNIX, SOCK_SEQPACKET, 0, pair))
        return 2;
    if ((!strcmp(mode, "rights") || !strcmp(mode, "options")) &&
        socketpair(AF_UNIX, SOCK_STREAM, 0, pair))
        return 2;
    int has_child = strcmp(mode, "external") != 0;
    if (has_child) {
        child_pid = fork();
        if (child_pid < 0)
            return 2;
        if (child_pid == 0) {
            child_pid = getpid();
            char b;
            if (!strcmp(mode, "dgram")) {
                fds[3] = pair[1];
                close(pair[0]);
                read(go_r, &b, 1);
                dgram_child_setup();
                write(res_w, "d", 1);
            } else if (!strcmp(mode, "rights")) {
                fds[0] = pair[1];
                fds[1] = pair[0];
                rights_child_setup();
                write(res_w, "d", 1);
            } else if (!strcmp(mode, "options")) {
                fds[0] = pair[1];
                fds[1] = pair[0];
                close(pair[0]);
                options_child_setup();
            } else {
                read(go_r, &b, 1);
                stream_child_setup();
                write(res_w, "d", 1);
            }
            /* Wait for the verify order (read blocks across the checkpoint). */
            while (read(go_r, &b, 1) == 1 && b != 'v')
                ;
            if (!strcmp(mode, "dgram"))
                dgram_child_verify();
            else if (!strcmp(mode, "rights"))
                rights_child_verify();
            else if (!strcmp(mode, "options"))
                options_child_verify();
            else
                stream_child_verify();
            write(res_w, failed ? "F" : "K", 1);
            _exit(failed);
        }
    }
    if (has_child) {
        /* Only the child writes results and reads orders: a child that dies is seen. */
        close(res_w);
        close(go_r);
    }
    if (!strcmp(mode, "dgram")) {
        fds[5] = pair[0];
        close(pair[1]);
        dgram_parent_setup();
    } else if (!strcmp(mode, "rights")) {
        fds[1] = pair[0];
        close(pair[1]);
        rights_parent_setup();
    } else if (!strcmp(mode, "options")) {
        fds[1] = pair[0];
        close(pair[1]);
        options_parent_setup();
    } else if (!strcmp(mode, "external")) {
        external_parent_setup();
    } else {
        stream_parent_setup();
    }
    int ctl = open(argv[2], O_RDONLY);
    ack_fd = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack_fd < 0)
        return 2;
    dprintf(1, "ready\n");
    write(ack_fd, "r", 1);
    char c;
    if (read(ctl, &c, 1) != 1 || c != 'v')
        return 3;
    if (has_child) {
        write(go_w, "v", 1);
        char r = 0;
        if (read(res_r, &r, 1) != 1 || r != 'K')
            fail("the child found differences");
    }
    if (!strcmp(mode, "dgram"))
        dgram_parent_verify();
    else if (!strcmp(mode, "rights"))
        rights_parent_verify();
    else if (!strcmp(mode, "options"))
        options_parent_verify();
    else if (!strcmp(mode, "external"))
        external_parent_verify();
    else
        stream_parent_verify();
    /* Reaped after the checks: an owner that is a zombie still has its pid. */
    if (has_child) {
        int st = 0;
        if (waitpid(child_pid, &st, 0) != child_pid || !WIFEXITED(st) || WEXITSTATUS(st))
            fail("child status %#x", st);
    }
    dprintf(1, failed ? "done failed\n" : "done ok\n");
    write(ack_fd, "d", 1);
    return failed;
}
