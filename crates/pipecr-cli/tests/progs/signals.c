#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>
#include <unistd.h>
/* argv: OUT CTL ACK. Installs handlers that count into memory (SIGUSR1, SIGUSR2, SIGALRM,
   and SIGRTMIN+1 with SA_SIGINFO, recording si_value), blocks SIGUSR2 and SIGRTMIN+1 and
   makes one of each pending (SIGUSR2 for the thread, SIGRTMIN+1 with value 42 for the
   process), arms ITIMER_REAL for 1000 s. Per byte read from CTL ('q': exit 0; 'u': unblock
   SIGUSR2 and SIGRTMIN+1 first) it prints the counts and the seconds left on the timer
   to stdout (OUT), then writes an ack byte to ACK. SIGUSR1's handler also blocks SIGTERM
   and SIGHUP while it runs and has SA_NODEFER; 'f' prints instead what sigaction says of
   SIGUSR1 and SIGRTMIN+1: "usr1 handler=H flags=F mask=M rt handler=H flags=F", each
   handler 1 when it is the program's, each F the flags among SA_RESTART, SA_SIGINFO,
   SA_NODEFER, SA_ONSTACK and SA_RESETHAND (hex), M 1 when exactly SIGTERM and SIGHUP
   are in the mask. */
static volatile sig_atomic_t usr1, usr2, alrm, rt, rtval;
static void on_usr1(int s) { (void)s; usr1++; }
static void on_usr2(int s) { (void)s; usr2++; }
static void on_alrm(int s) { (void)s; alrm++; }
static void on_rt(int s, siginfo_t *si, void *u) {
    (void)s; (void)u;
    rt++;
    rtval = si->si_value.sival_int;
}
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    struct sigaction sa = {0};
    sa.sa_flags = SA_RESTART | SA_NODEFER;
    sa.sa_handler = on_usr1;
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaddset(&sa.sa_mask, SIGHUP);
    if (sigaction(SIGUSR1, &sa, 0)) return 2;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_usr2;
    if (sigaction(SIGUSR2, &sa, 0)) return 2;
    sa.sa_handler = on_alrm;
    if (sigaction(SIGALRM, &sa, 0)) return 2;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    sa.sa_sigaction = on_rt;
    if (sigaction(SIGRTMIN + 1, &sa, 0)) return 2;
    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGUSR2);
    sigaddset(&blocked, SIGRTMIN + 1);
    if (sigprocmask(SIG_BLOCK, &blocked, 0)) return 2;
    raise(SIGUSR2);
    union sigval v = {.sival_int = 42};
    if (sigqueue(getpid(), SIGRTMIN + 1, v)) return 2;
    struct itimerval it = {{0, 0}, {1000, 0}};
    if (setitimer(ITIMER_REAL, &it, 0)) return 2;
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    char c;
    for (;;) {
        ssize_t n = read(ctl, &c, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n != 1) return 3;
        if (c == 'q') return 0;
        if (c == 'f') {
            const int known = SA_RESTART | SA_SIGINFO | SA_NODEFER | SA_ONSTACK | SA_RESETHAND;
            struct sigaction u, r;
            if (sigaction(SIGUSR1, 0, &u) || sigaction(SIGRTMIN + 1, 0, &r)) return 4;
            int mask = 1;
            for (int sig = 1; sig < NSIG; sig++)
                if (sigismember(&u.sa_mask, sig) != (sig == SIGTERM || sig == SIGHUP)) mask = 0;
            printf("usr1 handler=%d flags=%x mask=%d rt handler=%d flags=%x\n",
                   u.sa_handler == on_usr1, u.sa_flags & known, mask,
                   r.sa_sigaction == on_rt, r.sa_flags & known);
            fflush(stdout);
            if (write(ack, "a", 1) != 1) return 4;
            continue;
        }
        if (c == 'u' && sigprocmask(SIG_UNBLOCK, &blocked, 0)) return 4;
        struct itimerval left;
        if (getitimer(ITIMER_REAL, &left)) return 4;
        printf("usr1=%d usr2=%d rt=%d rtval=%d alrm=%d left=%ld\n", (int)usr1, (int)usr2,
               (int)rt, (int)rtval, (int)alrm, (long)left.it_value.tv_sec);
        fflush(stdout);
        if (write(ack, "a", 1) != 1) return 4;
    }
}
