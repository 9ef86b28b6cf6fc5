#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/securebits.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
/* argv: OUT CTL ACK. Run as root. Sets, and records, the process and thread state a
   program can set for itself and rely on:
   - main thread: personality ADDR_NO_RANDOMIZE, no_new_privs, a seccomp filter F1 that
     makes getpgid fail with EACCES, THP disabled, timer slack 123456 ns, securebits
     SECBIT_NO_SETUID_FIXUP, parent-death signal SIGWINCH, child subreaper, not dumpable;
   - a worker thread "ps-worker" (created after F1, so it shares it): its own effective
     gid 1234 (raw setresgid: that thread only), CAP_NET_RAW out of its effective set,
     its own personality ADDR_NO_RANDOMIZE | UNAME26,
     securebits SECBIT_KEEP_CAPS, parent-death signal SIGURG, timer slack 654321 ns, and a
     second filter F2 of its own that makes getsid fail with ENOTTY;
   - a child C with a child G: C exits on demand, and G must then be re-parented to us.
   Prints "ready C G" to OUT and acks on ACK. Per byte read from CTL:
   'c': both threads compare what they are now with the record: prints "same" or
        "differs:" and each difference, then acks;
   't': the worker installs an allow-all filter with SECCOMP_FILTER_FLAG_TSYNC, which
        succeeds only if the main thread's filter is the very one the worker's chain
        starts with (shared, as the kernel made it); prints "tsync ok" or why not;
   'o': kills C and checks that G became our child (we are a subreaper): "adopted" or why
        not;
   'q': exits 0. */
struct state {
    char comm[16];
    int dumpable, pdeathsig, subreaper, nnp, seccomp, filters, thp, securebits;
    int getpgid_errno, getsid_errno;
    unsigned persona;
    unsigned long slack;
    uid_t uid[3];
    gid_t gid[3];
    struct __user_cap_data_struct caps[2];
};

static int out;
static void say(const char *s) {
    if (write(out, s, strlen(s)) < 0) _exit(9);
}

static int status_field(const char *key) {
    FILE *f = fopen("/proc/thread-self/status", "r");
    if (!f) return -1;
    char line[256];
    int v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, n)) v = atoi(line + n);
    fclose(f);
    return v;
}

static void take(struct state *s) {
    memset(s, 0, sizeof *s);
    prctl(PR_GET_NAME, s->comm);
    s->dumpable = prctl(PR_GET_DUMPABLE);
    prctl(PR_GET_PDEATHSIG, &s->pdeathsig);
    prctl(PR_GET_CHILD_SUBREAPER, &s->subreaper);
    s->nnp = prctl(PR_GET_NO_NEW_PRIVS);
    s->seccomp = prctl(PR_GET_SECCOMP);
    s->filters = status_field("Seccomp_filters:");
    s->thp = prctl(PR_GET_THP_DISABLE);
    s->securebits = prctl(PR_GET_SECUREBITS);
    errno = 0;
    if (syscall(SYS_getpgid, 0) < 0) s->getpgid_errno = errno;
    errno = 0;
    if (syscall(SYS_getsid, 0) < 0) s->getsid_errno = errno;
    s->persona = (unsigned)personality(0xffffffff);
    s->slack = (unsigned long)prctl(PR_GET_TIMERSLACK);
    syscall(SYS_getresuid, &s->uid[0], &s->uid[1], &s->uid[2]);
    syscall(SYS_getresgid, &s->gid[0], &s->gid[1], &s->gid[2]);
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    syscall(SYS_capget, &h, s->caps);
}

/* Appends each difference to buf; returns 1 when there is none. */
static int compare(const char *who, const struct state *a, const struct state *b, char *buf,
                   size_t len) {
    int same = 1;
#define DIFF(field, fmt)                                                                     \
    if (a->field != b->field) {                                                              \
        snprintf(buf + strlen(buf), len - strlen(buf), " %s " #field " " fmt "!=" fmt, who,   \
                 a->field, b->field);                                                        \
        same = 0;                                                                            \
    }
    if (strcmp(a->comm, b->comm)) {
        snprintf(buf + strlen(buf), len - strlen(buf), " %s comm %s!=%s", who, a->comm,
                 b->comm);
        same = 0;
    }
    DIFF(dumpable, "%d") DIFF(pdeathsig, "%d") DIFF(subreaper, "%d") DIFF(nnp, "%d")
    DIFF(seccomp, "%d") DIFF(filters, "%d") DIFF(thp, "%d") DIFF(securebits, "%#x")
    DIFF(getpgid_errno, "%d") DIFF(getsid_errno, "%d") DIFF(persona, "%#x")
    DIFF(slack, "%lu") DIFF(uid[0], "%u") DIFF(uid[1], "%u") DIFF(uid[2], "%u")
    DIFF(gid[0], "%u") DIFF(gid[1], "%u") DIFF(gid[2], "%u")
    DIFF(caps[0].effective, "%#x") DIFF(caps[0].permitted, "%#x")
    DIFF(caps[0].inheritable, "%#x") DIFF(caps[1].effective, "%#x")
    return same;
}

/* A filter making syscall `nr` fail with `err`, everything else allowed. */
static int deny(int nr, int err, unsigned flags) {
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog p = {sizeof f / sizeof f[0], f};
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &p);
}

static int to_worker[2], from_worker[2];
static struct state worker_before;

static void *worker(void *arg) {
    (void)arg;
    if (prctl(PR_SET_NAME, "ps-worker")) _exit(20);
    if (syscall(SYS_setresgid, -1, 1234, -1)) _exit(21);
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d)) _exit(22);
    d[0].effective &= ~(1u << CAP_NET_RAW);
    if (syscall(SYS_capset, &h, d)) _exit(23);
    if (prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS)) _exit(24);
    if (prctl(PR_SET_PDEATHSIG, SIGURG)) _exit(25);
    if (prctl(PR_SET_TIMERSLACK, 654321)) _exit(26);
    if (personality(ADDR_NO_RANDOMIZE | UNAME26) < 0) _exit(26);
    if (deny(SYS_getsid, ENOTTY, 0)) _exit(27);
    take(&worker_before);
    for (;;) {
        char c;
        if (write(from_worker[1], "r", 1) != 1) _exit(28);
        if (read(to_worker[0], &c, 1) != 1) _exit(29);
        static char buf[2048];
        buf[0] = 0;
        if (c == 'c') {
            struct state now;
            take(&now);
            compare("worker", &worker_before, &now, buf, sizeof buf);
        } else if (c == 't') {
            struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
            struct sock_fprog p = {1, allow};
            long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &p);
            if (r != 0)
                snprintf(buf, sizeof buf, " tsync returned %ld (%s)", r, strerror(errno));
        }
        size_t n = strlen(buf);
        if (write(from_worker[1], &n, sizeof n) != sizeof n) _exit(28);
        if (n && write(from_worker[1], buf, n) != (ssize_t)n) _exit(28);
    }
}

/* Asks the worker to run command c; appends what it reports to buf. */
static void ask(char c, char *buf, size_t len) {
    char r;
    size_t n;
    if (write(to_worker[1], &c, 1) != 1) _exit(30);
    if (read(from_worker[0], &n, sizeof n) != sizeof n) _exit(31);
    char tmp[2048];
    if (n >= sizeof tmp || (n && read(from_worker[0], tmp, n) != (ssize_t)n)) _exit(31);
    tmp[n] = 0;
    snprintf(buf + strlen(buf), len - strlen(buf), "%s", tmp);
    if (read(from_worker[0], &r, 1) != 1) _exit(31);
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0) return 2;
    if (personality(ADDR_NO_RANDOMIZE) < 0) return 3;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return 3;
    if (deny(SYS_getpgid, EACCES, 0)) return 3;
    if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) return 3;
    if (prctl(PR_SET_TIMERSLACK, 123456)) return 3;
    if (prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP)) return 3;
    if (prctl(PR_SET_PDEATHSIG, SIGWINCH)) return 3;
    if (prctl(PR_SET_CHILD_SUBREAPER, 1)) return 3;
    int gpipe[2];
    if (pipe(gpipe)) return 3;
    pid_t c = fork();
    if (c < 0) return 3;
    if (c == 0) {
        pid_t g = fork();
        if (g < 0) _exit(1);
        if (g == 0) {
            for (;;) pause();
        }
        if (write(gpipe[1], &g, sizeof g) != sizeof g) _exit(1);
        for (;;) pause();
    }
    pid_t g;
    if (read(gpipe[0], &g, sizeof g) != sizeof g) return 3;
    close(gpipe[0]);
    close(gpipe[1]);
    if (pipe(to_worker) || pipe(from_worker)) return 3;
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL)) return 3;
    char r;
    if (read(from_worker[0], &r, 1) != 1) return 4;
    /* After the worker's change of gid, which resets the process's dumpable flag. */
    if (prctl(PR_SET_DUMPABLE, 0)) return 3;
    struct state before;
    take(&before);
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    char line[256];
    snprintf(line, sizeof line, "ready %d %d\n", c, g);
    say(line);
    if (write(ack, "r", 1) != 1) return 2;
    for (;;) {
        char ch;
        ssize_t n = read(ctl, &ch, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n != 1 || ch == 'q') return 0;
        static char buf[4096];
        buf[0] = 0;
        if (ch == 'c') {
            struct state now;
            take(&now);
            compare("main", &before, &now, buf, sizeof buf);
            ask('c', buf, sizeof buf);
            say(buf[0] ? "differs:" : "same");
            say(buf);
            say("\n");
        } else if (ch == 't') {
            ask('t', buf, sizeof buf);
            say(buf[0] ? "tsync failed:" : "tsync ok");
            say(buf);
            say("\n");
        } else if (ch == 'o') {
            int st;
            kill(c, SIGKILL);
            if (waitpid(c, &st, 0) != c) {
                say("cannot reap C\n");
            } else {
                /* G is re-parented as C exits: before waitpid above returned. */
                char path[64], stat[512];
                snprintf(path, sizeof path, "/proc/%d/stat", g);
                int fd = open(path, O_RDONLY);
                ssize_t len = fd < 0 ? -1 : read(fd, stat, sizeof stat - 1);
                if (fd >= 0) close(fd);
                int ppid = -1;
                if (len > 0) {
                    stat[len] = 0;
                    char *p = strrchr(stat, ')');
                    if (p) sscanf(p + 2, "%*c %d", &ppid);
                }
                kill(g, SIGKILL);
                pid_t got = waitpid(g, &st, 0);
                if (ppid == getpid() && got == g)
                    say("adopted\n");
                else {
                    snprintf(line, sizeof line, "G's parent %d, waitpid %d (%s)\n", ppid, got,
                             got < 0 ? strerror(errno) : "ok");
                    say(line);
                }
            }
        }
        if (write(ack, "a", 1) != 1) return 2;
    }
}
