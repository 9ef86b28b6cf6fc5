/* A parent and two children that share its address space without being its threads:
 * H, created with clone(CLONE_VM | CLONE_SIGHAND), shares its memory and its table of
 * signal handlers; M, created with clone(CLONE_VM) (the window of a vfork or
 * posix_spawn child), shares its memory and has a table of its own (a copy, in which it
 * installed its own SIGTERM handler before the dump).
 *
 * argv: OUT CTL ACK. Prints "pids H M" to OUT, then acks once both children run.
 * Per byte read from CTL: 'v' verifies, through each child, that
 *   - a handler H installs now (SIGUSR2) is the parent's, and not M's;
 *   - the SIGUSR1 handler the parent installed before the dump runs in H (it counts in
 *     the shared memory, and the parent sees the count);
 *   - M's own SIGTERM handler is M's and not the parent's;
 *   - a word the parent writes is read by H and M, and one M writes is read by the
 *     parent;
 *   - both children's parent is the parent, and their pids are the ones printed;
 *   then prints "ok" or what differs, and acks.
 * 'q' asks H to exit 7 and M to exit 9, waits for both, checks their statuses, prints
 *   "exits ok" or what differs, acks and exits 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char hstack[64 * 1024] __attribute__((aligned(16)));
static char mstack[64 * 1024] __attribute__((aligned(16)));
/* Per child: commands from the parent, answers to it. */
static int hcmd[2], hans[2], mcmd[2], mans[2];
static volatile long shared_word;
static volatile long from_m;
static volatile int usr1_hits;
static volatile int term_hits;

static void on_usr1(int sig) { (void)sig; usr1_hits++; }
static void on_usr2(int sig) { (void)sig; }
static void on_term(int sig) { (void)sig; term_hits++; }

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

static int is_handler(int sig, void (*h)(int)) {
    struct sigaction sa;
    return sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == h;
}

/* Answers: a long. */
static int child(int cmd, int ans) {
    char c;
    for (;;) {
        if (readn(cmd, &c, 1)) _exit(1);
        long a = -1;
        if (c == 'i') {                                       /* install a SIGUSR2 handler */
            struct sigaction sa = {.sa_handler = on_usr2, .sa_flags = SA_RESTART};
            a = sigaction(SIGUSR2, &sa, NULL) == 0;
        }
        if (c == '2') a = is_handler(SIGUSR2, on_usr2);
        if (c == 't') a = is_handler(SIGTERM, on_term);
        if (c == 'h') a = usr1_hits;
        if (c == 'w') a = shared_word;
        if (c == 'm') { from_m = 4242; a = 1; }
        if (c == 'p') a = getppid();
        if (c == 'g') a = getpid();
        if (c == '7') _exit(7);
        if (c == '9') _exit(9);
        if (write(ans, &a, sizeof a) != sizeof a) _exit(1);
    }
}

static int h_child(void *arg) { (void)arg; return child(hcmd[0], hans[1]); }

static int m_child(void *arg) {
    (void)arg;
    struct sigaction sa = {.sa_handler = on_term, .sa_flags = SA_RESTART};
    if (sigaction(SIGTERM, &sa, NULL)) _exit(1);
    return child(mcmd[0], mans[1]);
}

static long ask(int cmd, int ans, char c) {
    long a = -2;
    if (write(cmd, &c, 1) != 1 || readn(ans, &a, sizeof a)) return -2;
    return a;
}

static void verify(int h, int m) {
    char why[512] = "";
    size_t n = 0;
#define DIFF(...) n += snprintf(why + n, n < sizeof why ? sizeof why - n : 0, __VA_ARGS__)
    if (ask(hcmd[1], hans[0], 'i') != 1) DIFF(" H:install");
    if (!is_handler(SIGUSR2, on_usr2)) DIFF(" P:usr2-not-shared");
    if (ask(mcmd[1], mans[0], '2') != 0) DIFF(" M:usr2-shared");
    int before = usr1_hits;
    if (kill(h, SIGUSR1)) DIFF(" kill");
    long hits = ask(hcmd[1], hans[0], 'h');
    if (hits != before + 1 || usr1_hits != before + 1) DIFF(" H:usr1-hits=%ld/%d", hits, usr1_hits);
    if (ask(mcmd[1], mans[0], 't') != 1) DIFF(" M:own-term-handler-lost");
    if (is_handler(SIGTERM, on_term)) DIFF(" P:has-M's-term-handler");
    shared_word = 0x5eed + before;
    if (ask(hcmd[1], hans[0], 'w') != 0x5eed + before) DIFF(" H:word");
    if (ask(mcmd[1], mans[0], 'w') != 0x5eed + before) DIFF(" M:word");
    from_m = 0;
    if (ask(mcmd[1], mans[0], 'm') != 1 || from_m != 4242) DIFF(" P:M's-word=%ld", from_m);
    if (ask(hcmd[1], hans[0], 'p') != getpid()) DIFF(" H:ppid");
    if (ask(mcmd[1], mans[0], 'p') != getpid()) DIFF(" M:ppid");
    if (ask(hcmd[1], hans[0], 'g') != h) DIFF(" H:pid");
    if (ask(mcmd[1], mans[0], 'g') != m) DIFF(" M:pid");
    if (n == 0) printf("ok\n");
    else printf("differs:%s\n", why);
    fflush(stdout);
}

static void finish(int h, int m) {
    char c = '7';
    int sh = -1, sm = -1;
    if (write(hcmd[1], &c, 1) != 1 || waitpid(h, &sh, __WALL) != h) sh = -1;
    c = '9';
    if (write(mcmd[1], &c, 1) != 1 || waitpid(m, &sm, __WALL) != m) sm = -1;
    if (WIFEXITED(sh) && WEXITSTATUS(sh) == 7 && WIFEXITED(sm) && WEXITSTATUS(sm) == 9)
        printf("exits ok\n");
    else
        printf("exits differ: H %#x M %#x\n", sh, sm);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
    if (sigaction(SIGUSR1, &sa, NULL)) return 2;
    if (pipe(hcmd) || pipe(hans) || pipe(mcmd) || pipe(mans)) return 2;
    int h = clone(h_child, hstack + sizeof hstack, CLONE_VM | CLONE_SIGHAND | SIGCHLD, 0);
    int m = clone(m_child, mstack + sizeof mstack, CLONE_VM | SIGCHLD, 0);
    if (h < 0 || m < 0) return 3;
    /* Both run (M with its handler installed): each answers once. */
    if (ask(hcmd[1], hans[0], 'g') != h || ask(mcmd[1], mans[0], 't') != 1) return 4;
    printf("pids %d %d\n", h, m);
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
        if (ch == 'v') verify(h, m);
        if (ch == 'q') finish(h, m);
        if (write(ack, "a", 1) != 1) return 2;
        if (ch == 'q') return 0;
    }
}
