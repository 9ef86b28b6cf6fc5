#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
/* argv: OUT CTL ACK. Leads its own process group and forks two children that stop:
   A with SIGSTOP, whose stop we collect with waitpid(WUNTRACED); B with SIGTSTP (a
   job-control stop), whose stop we only look at (waitid WNOWAIT), leaving its report
   for a later waitpid. Once both are stopped it prints "stopped A B" to OUT and writes
   an ack byte to ACK. Per byte read from CTL:
   'w': waitpid(-1, WUNTRACED | WCONTINUED | WNOHANG) must report B stopped by SIGTSTP,
        and a second call nothing (A's stop was collected already): "reports ok" or what
        it got;
   'a': continues A (SIGCONT); waitpid(A, WCONTINUED) must report it continued, and A
        must then run (it writes a byte to a pipe we read): "A continued and runs";
   'q': kills both, reaps them and exits 0. */
static int out;
static void say(const char *s) {
    if (write(out, s, strlen(s)) < 0) _exit(9);
}
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0) return 2;
    /* Our own group: a SIGTSTP stops only a group that is not orphaned, and ours has a
       parent (whoever started us) in another group of the session. */
    if (setpgid(0, 0)) return 2;
    int runs[2];
    if (pipe(runs)) return 2;
    pid_t a = fork();
    if (a < 0) return 2;
    if (a == 0) {
        raise(SIGSTOP);
        if (write(runs[1], "A", 1) != 1) _exit(1);
        for (;;) pause();
    }
    pid_t b = fork();
    if (b < 0) return 2;
    if (b == 0) {
        signal(SIGTSTP, SIG_DFL);
        raise(SIGTSTP);
        for (;;) pause();
    }
    int st;
    if (waitpid(a, &st, WUNTRACED) != a || !WIFSTOPPED(st) || WSTOPSIG(st) != SIGSTOP) return 3;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, b, &si, WSTOPPED | WNOWAIT) || si.si_code != CLD_STOPPED ||
        si.si_status != SIGTSTP)
        return 4;
    char line[256];
    snprintf(line, sizeof line, "stopped %d %d\n", a, b);
    say(line);
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    if (write(ack, "r", 1) != 1) return 2;
    for (;;) {
        char ch;
        ssize_t n = read(ctl, &ch, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n != 1) return 5;
        if (ch == 'q') {
            kill(a, SIGKILL);
            kill(b, SIGKILL);
            waitpid(a, &st, 0);
            waitpid(b, &st, 0);
            return 0;
        }
        if (ch == 'w') {
            pid_t got = waitpid(-1, &st, WUNTRACED | WCONTINUED | WNOHANG);
            int got_st = st;
            pid_t again = waitpid(-1, &st, WUNTRACED | WCONTINUED | WNOHANG);
            if (got == b && WIFSTOPPED(got_st) && WSTOPSIG(got_st) == SIGTSTP && again == 0)
                say("reports ok\n");
            else {
                snprintf(line, sizeof line, "first %d status %#x, then %d status %#x\n", got,
                         got_st, again, st);
                say(line);
            }
        } else if (ch == 'a') {
            char c;
            kill(a, SIGCONT);
            pid_t got = waitpid(a, &st, WCONTINUED);
            if (got != a || !WIFCONTINUED(st))
                snprintf(line, sizeof line, "waitpid %d status %#x\n", got, st);
            else if (read(runs[0], &c, 1) != 1 || c != 'A')
                snprintf(line, sizeof line, "A does not run\n");
            else
                snprintf(line, sizeof line, "A continued and runs\n");
            say(line);
        }
        if (write(ack, "a", 1) != 1) return 2;
    }
}
