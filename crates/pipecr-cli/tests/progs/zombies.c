#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
/* argv: OUT CTL ACK. Forks four children and does not reap them: A exits with status 7,
   B is killed by SIGTERM (its default action), C exits 0, D is killed by SIGQUIT with
   RLIMIT_CORE raised (a core dump next to OUT, where the system writes one). Once each
   has exited (seen with waitid WNOWAIT, which leaves it a zombie) it
   prints "zombies A B C D dumped N" (N: 1 when D dumped core) to OUT and writes an ack
   byte to ACK.
   Per byte read from CTL: 'q' exits 0; 'w' reaps each child with waitpid(pid) and checks
   its status (WIFEXITED 7; WIFSIGNALED SIGTERM; WIFEXITED 0; WIFSIGNALED SIGQUIT, with no
   core dump: a restored zombie's cannot be reproduced), prints "ok" or what differs, then
   acks. */
static int out;
static void say(const char *line) {
    if (write(out, line, strlen(line)) < 0) _exit(2);
}
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0) return 2;
    pid_t kids[4];
    for (int i = 0; i < 4; i++) {
        pid_t p = fork();
        if (p < 0) return 2;
        if (p == 0) {
            if (i == 0) _exit(7);
            if (i == 1) {
                signal(SIGTERM, SIG_DFL);
                raise(SIGTERM);
                _exit(3);
            }
            if (i == 3) {
                /* The core file, if any, goes next to OUT (the test's directory). */
                char dir[4096];
                snprintf(dir, sizeof dir, "%s", argv[1]);
                char *slash = strrchr(dir, '/');
                if (slash) *slash = 0;
                if (!slash || chdir(dir) != 0) _exit(4);
                struct rlimit core = {RLIM_INFINITY, RLIM_INFINITY};
                setrlimit(RLIMIT_CORE, &core);
                signal(SIGQUIT, SIG_DFL);
                raise(SIGQUIT);
                _exit(3);
            }
            _exit(0);
        }
        kids[i] = p;
    }
    int dumped = 0;
    for (int i = 0; i < 4; i++) {
        siginfo_t si;
        while (waitid(P_PID, kids[i], &si, WEXITED | WNOWAIT) < 0)
            if (errno != EINTR) return 2;
        if (i == 3) dumped = si.si_code == CLD_DUMPED;
    }
    char line[128];
    snprintf(line, sizeof line, "zombies %d %d %d %d dumped %d\n", kids[0], kids[1], kids[2],
             kids[3], dumped);
    say(line);
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    if (write(ack, "r", 1) != 1) return 2;
    for (;;) {
        char ch;
        ssize_t r = read(ctl, &ch, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r != 1 || ch == 'q') return 0;
        if (ch == 'w') {
            int bad = 0;
            for (int i = 0; i < 4; i++) {
                int st = 0;
                pid_t got;
                while ((got = waitpid(kids[i], &st, 0)) < 0 && errno == EINTR) {}
                int want_ok = got == kids[i] &&
                    (i == 0 ? WIFEXITED(st) && WEXITSTATUS(st) == 7
                     : i == 1 ? WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM && !WCOREDUMP(st)
                     : i == 2 ? WIFEXITED(st) && WEXITSTATUS(st) == 0
                              : WIFSIGNALED(st) && WTERMSIG(st) == SIGQUIT && !WCOREDUMP(st));
                if (!want_ok) {
                    snprintf(line, sizeof line, "child %d: waitpid returned %d status %#x (%s)\n",
                             kids[i], got, st, got < 0 ? strerror(errno) : "wrong");
                    say(line);
                    bad = 1;
                }
            }
            /* Nothing else is left to reap. */
            if (waitpid(-1, 0, WNOHANG) != -1 || errno != ECHILD) {
                say("another child is left\n");
                bad = 1;
            }
            if (!bad) say("ok\n");
        }
        if (write(ack, "a", 1) != 1) return 2;
    }
}
