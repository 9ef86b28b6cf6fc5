/* argv: OUT CTL ACK. Blocks SIGUSR2 and SIGRTMIN+2, makes both pending for the process
 * (SIGRTMIN+2 twice, with values 7 and 8: real-time signals queue), and reads them through
 * a non-blocking signalfd (fd 5, SFD_NONBLOCK | SFD_CLOEXEC) made for the two, which it
 * has not read yet. Acks once set up. Per byte read from CTL:
 *   'v' prints one line: "sfd flags=F" (F: O_NONBLOCK set, 1 or 0; FD_CLOEXEC set, 1 or
 *       0), then per signal read "SIG/CODE/VALUE/PID-IS-ME" (SIGRTMIN+n as 1000+n) until
 *       EAGAIN, then "empty",
 *       then after a SIGUSR2 sent to itself now, what one more read gives;
 *   'q' exits 0.
 * Each print goes to OUT and is followed by an ack byte on ACK. Errors exit above 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <unistd.h>

static int read_one(int sfd) {
    struct signalfd_siginfo si;
    ssize_t n = read(sfd, &si, sizeof si);
    if (n < 0 && errno == EAGAIN) return 0;
    if (n != sizeof si) return -1;
    printf(" %d/%d/%d/%d", (int)si.ssi_signo - (si.ssi_signo >= (unsigned)SIGRTMIN ? SIGRTMIN : 0) +
                               (si.ssi_signo >= (unsigned)SIGRTMIN ? 1000 : 0),
           si.ssi_code, si.ssi_int, si.ssi_pid == (unsigned)getpid());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGRTMIN + 2);
    if (sigprocmask(SIG_BLOCK, &set, 0)) return 2;
    union sigval v7 = {.sival_int = 7}, v8 = {.sival_int = 8};
    if (sigqueue(getpid(), SIGRTMIN + 2, v7) || sigqueue(getpid(), SIGRTMIN + 2, v8)) return 2;
    if (kill(getpid(), SIGUSR2)) return 2;
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0 || dup2(sfd, 5) != 5) return 2;
    if (sfd != 5) close(sfd);
    if (fcntl(5, F_SETFD, FD_CLOEXEC)) return 2;
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    if (write(ack, "r", 1) != 1) return 2;
    char c;
    for (;;) {
        ssize_t n = read(ctl, &c, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n != 1) return 3;
        if (c == 'q') return 0;
        if (c == 'v') {
            printf("sfd flags=%d%d", (fcntl(5, F_GETFL) & O_NONBLOCK) != 0,
                   (fcntl(5, F_GETFD) & FD_CLOEXEC) != 0);
            int r;
            while ((r = read_one(5)) == 1) {}
            if (r < 0) return 4;
            printf(" empty");
            if (kill(getpid(), SIGUSR2)) return 4;
            if (read_one(5) != 1) printf(" nothing");
            printf("\n");
        }
        fflush(stdout);
        if (write(ack, "a", 1) != 1) return 4;
    }
}
