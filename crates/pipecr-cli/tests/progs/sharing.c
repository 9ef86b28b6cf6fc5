/* A parent and two children that share a kernel object with it without being its
 * threads: F, created with clone(CLONE_FILES), shares its descriptor table; S, created
 * with clone(CLONE_FS), shares its filesystem context (cwd, umask).
 *
 * argv: OUT CTL ACK; DIR is the directory of OUT. Prints "pids F S" to OUT, then acks once both children run.
 * Per byte read from CTL: 'q' exits 0; 'v' verifies, through each child, that
 *   - a descriptor the parent opens now (at 900) is open in F and not in S, and one F
 *     opens (at 901) is open in the parent;
 *   - a chdir of the parent (to DIR) is seen by S and not by F, and one of S (to /) is
 *     seen by the parent; a umask set by S is the parent's;
 * then prints "ok" or what differs, and acks. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fstack[64 * 1024] __attribute__((aligned(16)));
static char sstack[64 * 1024] __attribute__((aligned(16)));
/* Per child: commands from the parent, answers to it. */
static int fcmd[2], fans[2], scmd[2], sans[2];

static int readn(int fd, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += r;
    }
    return 0;
}

/* Answers: 1 byte, '1' when the fact holds. */
static int files_child(void *arg) {
    (void)arg;
    char c;
    for (;;) {
        if (readn(fcmd[0], &c, 1)) _exit(1);
        char a = '0';
        if (c == 'o') a = fcntl(900, F_GETFD) != -1 ? '1' : '0';          /* parent's fd? */
        if (c == 'n') a = dup2(fans[1], 901) == 901 ? '1' : '0';           /* open one */
        if (c == 'c') {                                                    /* cwd is "/"? */
            char cwd[PATH_MAX];
            a = getcwd(cwd, sizeof cwd) && strcmp(cwd, "/") == 0 ? '1' : '0';
        }
        if (write(fans[1], &a, 1) != 1) _exit(1);
    }
}

static int fs_child(void *arg) {
    const char *dir = arg;
    char c;
    for (;;) {
        if (readn(scmd[0], &c, 1)) _exit(1);
        char a = '0';
        char cwd[PATH_MAX];
        if (c == 'o') a = fcntl(900, F_GETFD) != -1 ? '1' : '0';
        if (c == 'd') a = getcwd(cwd, sizeof cwd) && strcmp(cwd, dir) == 0 ? '1' : '0';
        if (c == 'r') a = chdir("/") == 0 ? '1' : '0';
        if (c == 'u') { umask(027); a = '1'; }
        if (write(sans[1], &a, 1) != 1) _exit(1);
    }
}

static char ask(int cmd, int ans, char c) {
    char a = '?';
    if (write(cmd, &c, 1) != 1 || readn(ans, &a, 1)) return '?';
    return a;
}

static void verify(const char *dir) {
    char why[512] = "";
    size_t n = 0;
#define DIFF(...) n += snprintf(why + n, n < sizeof why ? sizeof why - n : 0, __VA_ARGS__)
    int fd = open("/dev/null", O_RDONLY);
    if (fd < 0 || dup2(fd, 900) != 900) DIFF(" open");
    close(fd);
    if (ask(fcmd[1], fans[0], 'o') != '1') DIFF(" F:no-fd-900");
    if (ask(scmd[1], sans[0], 'o') != '0') DIFF(" S:has-fd-900");
    if (ask(fcmd[1], fans[0], 'n') != '1') DIFF(" F:dup2-901");
    if (fcntl(901, F_GETFD) == -1) DIFF(" P:no-fd-901");
    close(900);
    close(901);
    if (chdir(dir)) DIFF(" chdir");
    if (ask(scmd[1], sans[0], 'd') != '1') DIFF(" S:cwd-not-followed");
    if (ask(fcmd[1], fans[0], 'c') != '1') DIFF(" F:cwd-followed");
    if (ask(scmd[1], sans[0], 'r') != '1') DIFF(" S:chdir");
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd) || strcmp(cwd, "/") != 0) DIFF(" P:cwd-not-followed");
    if (ask(scmd[1], sans[0], 'u') != '1') DIFF(" S:umask");
    mode_t m = umask(022);
    if (m != 027) DIFF(" P:umask=%03o", (unsigned)m);
    if (n == 0) printf("ok\n");
    else printf("differs:%s\n", why);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    static char dir[PATH_MAX], copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", argv[1]);
    if (!realpath(dirname(copy), dir)) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    if (chdir("/")) return 2;
    if (pipe(fcmd) || pipe(fans) || pipe(scmd) || pipe(sans)) return 2;
    int f = clone(files_child, fstack + sizeof fstack, CLONE_FILES | SIGCHLD, 0);
    int s = clone(fs_child, sstack + sizeof sstack, CLONE_FS | SIGCHLD, dir);
    if (f < 0 || s < 0) return 3;
    /* Both run: each answers once. */
    if (ask(fcmd[1], fans[0], 'c') != '1' || ask(scmd[1], sans[0], 'o') != '0') return 4;
    printf("pids %d %d\n", f, s);
    fflush(stdout);
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    if (write(ack, "r", 1) != 1) return 2;
    char ch;
    for (;;) {
        ssize_t r = read(ctl, &ch, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r != 1) return 6;
        if (ch == 'q') {
            kill(f, SIGKILL);
            kill(s, SIGKILL);
            return 0;
        }
        if (ch == 'v') verify(dir);
        if (write(ack, "a", 1) != 1) return 2;
    }
}
