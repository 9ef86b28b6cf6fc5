/* argv: OUT CTL ACK. The way util-linux `script` waits for its child: SIGCHLD blocked and
 * read through a signalfd, polled (poll(-1)) together with the control FIFO. Forks one
 * child that waits on a pipe and exits 7 when told; prints "child C" and acks once set up.
 * Per byte read from CTL:
 *   'e' tells the child to exit (no ack: the ack comes with the exit's report);
 *   'q' exits 0.
 * Per siginfo read from the signalfd it prints "sigchld pid=P code=C status=S"; an exit
 * (CLD_EXITED, CLD_KILLED, CLD_DUMPED: what `script` acts on, it ignores the others) is
 * reaped with waitpid(child, WNOHANG), printed as "reaped pid=P status=S" (or "not
 * reaped"), and acked. Errors exit above 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_chld(int sig, siginfo_t *si, void *uc) {
    (void)sig, (void)si, (void)uc;
    _exit(5);
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &set, 0)) return 2;
    /* A handler too, which never runs (SIGCHLD stays blocked): a SIGCHLD queued while
     * the restore holds the process then stays queued whenever it came (installing a
     * default or ignoring disposition would discard it), as in a program that reaps in
     * a handler elsewhere. */
    struct sigaction sa = {.sa_sigaction = on_chld, .sa_flags = SA_SIGINFO | SA_RESTART};
    if (sigaction(SIGCHLD, &sa, 0)) return 2;
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sfd < 0) return 2;
    int p[2];
    if (pipe2(p, O_CLOEXEC)) return 2;
    pid_t child = fork();
    if (child < 0) return 2;
    if (child == 0) {
        char c;
        while (read(p[0], &c, 1) < 0 && errno == EINTR) {}
        _exit(7);
    }
    close(p[0]);
    int ctl = open(argv[2], O_RDONLY | O_CLOEXEC);
    int ack = open(argv[3], O_WRONLY | O_CLOEXEC);
    if (ctl < 0 || ack < 0) return 2;
    printf("child %d\n", (int)child);
    fflush(stdout);
    if (write(ack, "r", 1) != 1) return 2;
    for (;;) {
        struct pollfd pfd[2] = {{.fd = sfd, .events = POLLIN}, {.fd = ctl, .events = POLLIN}};
        int n = poll(pfd, 2, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return 3;
        if (pfd[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) != sizeof si) return 3;
            printf("sigchld pid=%d code=%d status=%d\n", (int)si.ssi_pid, si.ssi_code,
                   si.ssi_status);
            if (si.ssi_code == CLD_EXITED || si.ssi_code == CLD_KILLED ||
                si.ssi_code == CLD_DUMPED) {
                int st;
                pid_t r = waitpid(child, &st, WNOHANG);
                if (r == child && WIFEXITED(st))
                    printf("reaped pid=%d status=%d\n", (int)r, WEXITSTATUS(st));
                else
                    printf("not reaped\n");
                fflush(stdout);
                if (write(ack, "a", 1) != 1) return 3;
            }
            fflush(stdout);
        }
        if (pfd[1].revents & (POLLIN | POLLHUP)) {
            char c;
            if (read(ctl, &c, 1) != 1) return 3;
            if (c == 'q') return 0;
            if (c == 'e' && write(p[1], "x", 1) != 1) return 3;
        }
    }
}
