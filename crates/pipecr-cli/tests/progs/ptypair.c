#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <asm/termbits.h>
/* argv: OUT CTL ACK [PTMX]. A pseudo-terminal pair across a session, self-checking.
     P (this process) holds the master M (opened at PTMX, /dev/ptmx by default; the
       slave is opened from it with TIOCGPTPEER): canonical mode with echo, VERASE changed to
       ^H, a custom speed of 12345 baud (BOTHER), window 33x101 (7x9 pixels), packet
       mode on, and the slave locked once C and G opened it.
     C, P's child: setsid, opens the slave with O_NOCTTY and makes it its controlling
       terminal (TIOCSCTTY); it is the session leader and only waits.
     G, C's child: its own process group, made the terminal's foreground group; holds
       the slave S (exclusive mode on) and /dev/tty T.
     R, a second pair P holds both ends of (master rm, slave rs), in raw mode (no
       ICANON, ECHO, ISIG, ICRNL nor OPOST; VMIN 1): "\003\r\177raw" queued for rs, and
       "\003x\n" for rm, kept as they are.
   Queued at the dump: G wrote "out1\n" to S (M reads "out1\r\n"), then P wrote
   "line1\npart" to M (echoed: M reads "line1\r\npart"; S has one line and a partial one).
   Prints "pids C G" to OUT and acks. Per byte read from CTL:
     'v' checks everything from inside (P: the master's modes, termios, window, the bytes
         M reads; G: the lines S reads, exclusive mode, tcgetpgrp, getsid, /dev/tty, its
         ctty in /proc/self/stat; P: C's and G's tty_nr and tpgid) and goes on with more
         bytes both ways; prints "ok" or what differs, acks.
     'f' G opens a perf_event fd at fd 100 (which a dump refuses), acks.
     'q' kills C and G and exits 0. */

static int out, m, rm, rs;
static pid_t c, g;
static char bad[1024];
#define FAIL(...) do { snprintf(bad, sizeof bad, __VA_ARGS__); return -1; } while (0)

static void say(const char *line) {
    if (write(out, line, strlen(line)) < 0) _exit(2);
}

/* Everything M has to read now, packet-mode prefixes removed (each read starts with
   TIOCPKT_DATA, 0). */
static int read_master(char *buf, int cap) {
    int n = 0;
    struct pollfd p = {m, POLLIN, 0};
    while (poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
        char tmp[512];
        ssize_t k = read(m, tmp, sizeof tmp);
        if (k <= 0) break;
        if (tmp[0] != 0) FAIL("packet-mode status byte %d", tmp[0]);
        if (n + k - 1 > cap) FAIL("too much from the master");
        memcpy(buf + n, tmp + 1, k - 1);
        n += k - 1;
    }
    buf[n] = 0;
    return n;
}

static int stat_tty(pid_t pid, unsigned *tty_nr, int *tpgid) {
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    if (!fgets(line, sizeof line, f)) { fclose(f); return -1; }
    fclose(f);
    char *p = strrchr(line, ')');
    char state;
    int ppid, pgrp, session;
    if (!p || sscanf(p + 2, "%c %d %d %d %u %d", &state, &ppid, &pgrp, &session, tty_nr, tpgid) != 6)
        return -1;
    return 0;
}

/* G's half. Commands on `cmd`, one line of result on `res`. */
static int g_check(int s, int t, char *res, size_t cap) {
    char buf[256];
    ssize_t n = read(s, buf, sizeof buf);
    if (n != 6 || memcmp(buf, "line1\n", 6) != 0)
        return snprintf(res, cap, "G: first read %zd bytes '%.*s', want 'line1\\n'", n, (int)(n > 0 ? n : 0), buf), -1;
    struct pollfd p = {s, POLLIN, 0};
    if (poll(&p, 1, 0) != 0) return snprintf(res, cap, "G: the partial line is readable"), -1;
    int excl = -1;
    if (ioctl(s, TIOCGEXCL, &excl) != 0 || excl != 1) return snprintf(res, cap, "G: exclusive %d", excl), -1;
    if (tcgetpgrp(s) != getpgrp()) return snprintf(res, cap, "G: tcgetpgrp %d, want %d", tcgetpgrp(s), getpgrp()), -1;
    if (getsid(0) != getppid()) return snprintf(res, cap, "G: getsid %d, want %d", getsid(0), getppid()), -1;
    struct stat st;
    if (fstat(s, &st) != 0) return snprintf(res, cap, "G: fstat"), -1;
    unsigned tty_nr;
    int tpgid;
    if (stat_tty(getpid(), &tty_nr, &tpgid) != 0) return snprintf(res, cap, "G: stat"), -1;
    if (tty_nr != (unsigned)(major(st.st_rdev) << 8 | (minor(st.st_rdev) & 0xff) | ((minor(st.st_rdev) & ~0xffu) << 12)))
        return snprintf(res, cap, "G: tty_nr %u is not S's device %u:%u", tty_nr, major(st.st_rdev), minor(st.st_rdev)), -1;
    int t2 = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (t2 < 0) return snprintf(res, cap, "G: open /dev/tty: %s", strerror(errno)), -1;
    if (write(t2, "tty2\n", 5) != 5 || write(t, "tty\n", 4) != 4 || write(s, "back\n", 5) != 5)
        return snprintf(res, cap, "G: write: %s", strerror(errno)), -1;
    close(t2);
    return snprintf(res, cap, "ok"), 0;
}

static void g_main(int s, int t, int cmd, int res) {
    char c1;
    while (read(cmd, &c1, 1) == 1) {
        char line[512];
        if (c1 == 'v') {
            g_check(s, t, line, sizeof line);
        } else if (c1 == 'c') {
            char buf[64];
            ssize_t n = read(s, buf, sizeof buf);
            if (n == 8 && memcmp(buf, "partial\n", 8) == 0) snprintf(line, sizeof line, "ok");
            else snprintf(line, sizeof line, "G: second read %zd '%.*s'", n, (int)(n > 0 ? n : 0), buf);
        } else if (c1 == 'f') {
            struct perf_event_attr pa;
            memset(&pa, 0, sizeof pa);
            pa.type = PERF_TYPE_SOFTWARE;
            pa.size = sizeof pa;
            pa.config = PERF_COUNT_SW_DUMMY;
            pa.disabled = 1;
            pa.exclude_kernel = 1;
            pa.exclude_hv = 1;
            int fa = syscall(SYS_perf_event_open, &pa, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
            if (fa < 0 || dup2(fa, 100) != 100) snprintf(line, sizeof line, "G: perf_event_open: %s", strerror(errno));
            else close(fa), snprintf(line, sizeof line, "ok");
        } else {
            continue;
        }
        size_t len = strlen(line) + 1;
        if (write(res, line, len) != (ssize_t)len) _exit(2);
    }
    _exit(0);
}

static int ask_g(int cmd, int res, char what, char *line, size_t cap) {
    if (write(cmd, &what, 1) != 1) FAIL("write to G");
    size_t n = 0;
    while (n < cap - 1) {
        ssize_t k = read(res, line + n, 1);
        if (k != 1) FAIL("G is gone");
        if (line[n] == 0) break;
        n++;
    }
    line[n] = 0;
    return 0;
}

static int check(int cmd, int res) {
    int v = -1;
    if (ioctl(m, TIOCGPKT, &v) != 0 || v != 1) FAIL("packet mode %d", v);
    if (ioctl(m, TIOCGPTLCK, &v) != 0 || v != 1) FAIL("lock %d", v);
    struct winsize ws;
    if (ioctl(m, TIOCGWINSZ, &ws) != 0 || ws.ws_row != 33 || ws.ws_col != 101 || ws.ws_xpixel != 7 || ws.ws_ypixel != 9)
        FAIL("window %ux%u %ux%u", ws.ws_row, ws.ws_col, ws.ws_xpixel, ws.ws_ypixel);
    struct termios2 t;
    if (ioctl(m, TCGETS2, &t) != 0) FAIL("TCGETS2");
    if (t.c_ispeed != 12345 || t.c_ospeed != 12345 || (t.c_cflag & CBAUD) != BOTHER)
        FAIL("speed %u %u cflag %o", t.c_ispeed, t.c_ospeed, t.c_cflag);
    if (t.c_cc[VERASE] != 8 || !(t.c_lflag & ICANON) || !(t.c_lflag & ECHO) || !(t.c_oflag & ONLCR))
        FAIL("termios VERASE %d lflag %o oflag %o", t.c_cc[VERASE], t.c_lflag, t.c_oflag);
    char buf[512];
    if (read_master(buf, sizeof buf - 1) < 0) return -1;
    if (strcmp(buf, "out1\r\nline1\r\npart") != 0) FAIL("the master read '%s'", buf);
    /* The slave's side, from G, which opens /dev/tty again: only an unlocked slave
       opens. */
    v = 0;
    if (ioctl(m, TIOCSPTLCK, &v) != 0) FAIL("unlock");
    char line[512];
    if (ask_g(cmd, res, 'v', line, sizeof line) != 0) return -1;
    if (strcmp(line, "ok") != 0) FAIL("%s", line);
    /* The partial line goes on. */
    if (write(m, "ial\n", 4) != 4) FAIL("write the master");
    if (ask_g(cmd, res, 'c', line, sizeof line) != 0) return -1;
    if (strcmp(line, "ok") != 0) FAIL("%s", line);
    if (read_master(buf, sizeof buf - 1) < 0) return -1;
    if (strcmp(buf, "tty2\r\ntty\r\nback\r\nial\r\n") != 0) FAIL("then the master read '%s'", buf);
    /* The raw pair, byte for byte. */
    if (ioctl(rm, TCGETS2, &t) != 0) FAIL("TCGETS2 raw");
    if (t.c_lflag & (ICANON | ECHO | ISIG) || t.c_iflag & ICRNL || t.c_oflag & OPOST || t.c_cc[VMIN] != 1)
        FAIL("raw termios lflag %o iflag %o oflag %o", t.c_lflag, t.c_iflag, t.c_oflag);
    char raw[64];
    struct pollfd rp = {rs, POLLIN, 0};
    ssize_t k = poll(&rp, 1, 0) == 1 ? read(rs, raw, sizeof raw) : -1;
    if (k != 6 || memcmp(raw, "\003\r\177raw", 6) != 0) FAIL("raw slave read %zd bytes", k);
    rp.fd = rm;
    k = poll(&rp, 1, 0) == 1 ? read(rm, raw, sizeof raw) : -1;
    if (k != 3 || memcmp(raw, "\003x\n", 3) != 0) FAIL("raw master read %zd bytes", k);
    /* The session: C leads it with the slave as controlling terminal, G in front. */
    unsigned idx, tty_nr;
    int tpgid;
    if (ioctl(m, TIOCGPTN, &idx) != 0) FAIL("TIOCGPTN");
    unsigned want = 136 << 8 | (idx & 0xff) | ((idx & ~0xffu) << 12);
    if (stat_tty(c, &tty_nr, &tpgid) != 0 || tty_nr != want || tpgid != g)
        FAIL("C: tty_nr %u (want %u) tpgid %d (want %d)", tty_nr, want, tpgid, g);
    if (stat_tty(g, &tty_nr, &tpgid) != 0 || tty_nr != want) FAIL("G: tty_nr %u", tty_nr);
    if (getsid(c) != c || getpgid(g) != g) FAIL("sessions: C %d G %d", getsid(c), getpgid(g));
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) return 2;
    const char *ptmx = argc == 5 ? argv[4] : "/dev/ptmx";
    out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int ctl = open(argv[2], O_RDONLY | O_CLOEXEC);
    int ack = open(argv[3], O_WRONLY | O_CLOEXEC);
    if (out < 0 || ctl < 0 || ack < 0) return 2;
    m = open(ptmx, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0 || unlockpt(m) != 0) return 2;
    struct termios2 t;
    if (ioctl(m, TCGETS2, &t) != 0) return 2;
    t.c_cc[VERASE] = 8;
    t.c_lflag |= ICANON | ECHO;
    t.c_cflag = (t.c_cflag & ~CBAUD) | BOTHER;
    t.c_ispeed = t.c_ospeed = 12345;
    if (ioctl(m, TCSETS2, &t) != 0) return 2;
    struct winsize ws = {33, 101, 7, 9};
    if (ioctl(m, TIOCSWINSZ, &ws) != 0) return 2;
    int on = 1;
    if (ioctl(m, TIOCPKT, &on) != 0) return 2;
    rm = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (rm < 0 || unlockpt(rm) != 0) return 2;
    rs = ioctl(rm, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    struct termios2 r;
    if (rs < 0 || ioctl(rm, TCGETS2, &r) != 0) return 2;
    r.c_lflag &= ~(ICANON | ECHO | ISIG | IEXTEN);
    r.c_iflag &= ~(ICRNL | IXON);
    r.c_oflag &= ~OPOST;
    r.c_cc[VMIN] = 1;
    r.c_cc[VTIME] = 0;
    if (ioctl(rm, TCSETS2, &r) != 0) return 2;
    if (write(rm, "\003\r\177raw", 6) != 6 || write(rs, "\003x\n", 3) != 3) return 2;
    int cmd[2], res[2], ready[2], hold[2];
    if (pipe2(cmd, O_CLOEXEC) || pipe2(res, O_CLOEXEC) || pipe2(ready, O_CLOEXEC) || pipe2(hold, O_CLOEXEC)) return 2;
    c = fork();
    if (c < 0) return 2;
    if (c == 0) {
        int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        close(ctl); close(ack); close(out); close(m); close(rm); close(rs);
        close(cmd[1]); close(res[0]); close(ready[0]); close(hold[1]);
        if (s < 0 || setsid() < 0) _exit(2);
        if (ioctl(s, TIOCSCTTY, 0) != 0) _exit(2);
        pid_t gg = fork();
        if (gg < 0) _exit(2);
        if (gg == 0) {
            close(hold[0]);
            if (setpgid(0, 0) != 0) _exit(2);
            sigset_t ttou, old;
            sigemptyset(&ttou);
            sigaddset(&ttou, SIGTTOU);
            sigprocmask(SIG_BLOCK, &ttou, &old);
            if (tcsetpgrp(s, getpid()) != 0) _exit(2);
            sigprocmask(SIG_SETMASK, &old, NULL);
            int tt = open("/dev/tty", O_RDWR | O_CLOEXEC);
            if (tt < 0 || ioctl(s, TIOCEXCL) != 0) _exit(2);
            if (write(s, "out1\n", 5) != 5) _exit(2);
            pid_t me = getpid();
            if (write(ready[1], &me, sizeof me) != sizeof me) _exit(2);
            close(ready[1]);
            g_main(s, tt, cmd[0], res[1]);
        }
        close(cmd[0]); close(res[1]); close(s);
        close(ready[1]);
        char x;
        while (read(hold[0], &x, 1) < 0 && errno == EINTR) {}
        _exit(0);
    }
    close(cmd[0]); close(res[1]); close(ready[1]); close(hold[0]);
    if (read(ready[0], &g, sizeof g) != sizeof g) return 2;
    close(ready[0]);
    /* G's "out1\n" is in M's queue before P's bytes and their echo. */
    struct pollfd p = {m, POLLIN, 0};
    if (poll(&p, 1, -1) != 1) return 2;
    if (write(m, "line1\npart", 10) != 10) return 2;
    on = 1;
    if (ioctl(m, TIOCSPTLCK, &on) != 0) return 2;
    dprintf(out, "pids %d %d\n", c, g);
    if (write(ack, "r", 1) != 1) return 2;
    char b;
    while (read(ctl, &b, 1) == 1) {
        if (b == 'q') break;
        if (b == 'v') {
            say(check(cmd[1], res[0]) == 0 ? "ok\n" : bad);
            if (bad[0]) say("\n");
        } else if (b == 'f') {
            char line[512];
            if (ask_g(cmd[1], res[0], 'f', line, sizeof line) != 0) say(bad), say("\n");
            else say(line), say("\n");
        } else {
            continue;
        }
        if (write(ack, "a", 1) != 1) return 2;
    }
    kill(g, SIGKILL);
    kill(c, SIGKILL);
    waitpid(c, NULL, 0);
    return 0;
}
