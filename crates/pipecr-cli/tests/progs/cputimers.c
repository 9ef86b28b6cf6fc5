/* cputimers OUT CTL ACK MODE: a process holding one POSIX timer that no restore can create
 * again, for the test that `pipecr dump` refuses it and resumes the process untouched.
 *
 * MODE thread: two threads (the second waits in pause); the main thread creates a timer
 *   on CLOCK_THREAD_CPUTIME_ID (its own CPU time: /proc/PID/timers cannot say which
 *   thread's), SIGEV_SIGNAL SIGRTMIN+1 (ignored), armed for 1000 s of CPU time.
 * MODE child: forks a child (it waits in pause) and creates a timer on the child's CPU-time
 *   clock (clock_getcpuclockid), SIGEV_SIGNAL SIGRTMIN+1 (ignored), armed for 1000 s.
 *
 * After setup it prints "timer ID clock CLOCK" on OUT and writes one ack byte to ACK.
 * Per byte read from CTL: 'q' exits 0 (after killing and reaping the child); 'v' checks
 * from inside that the timer is still armed (timer_gettime), that the second thread or the
 * child is still alive, then prints "ok" or what differs, and acks. Any failure of the
 * setup is reported on stderr with exit 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void *waiter(void *arg) {
    (void)arg;
    for (;;) pause();
    return 0;
}

static int fail(const char *what) {
    fprintf(stderr, "cputimers: %s: %s\n", what, strerror(errno));
    return 2;
}

int main(int argc, char **argv) {
    if (argc != 5) return 2;
    int thread_mode = strcmp(argv[4], "thread") == 0;
    if (!thread_mode && strcmp(argv[4], "child") != 0) return 2;
    FILE *out = fopen(argv[1], "w");
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (!out || ctl < 0 || ack < 0) return fail("open");
    setvbuf(out, 0, _IONBF, 0);
    signal(SIGRTMIN + 1, SIG_IGN);

    pthread_t thread;
    pid_t child = 0;
    clockid_t clock;
    if (thread_mode) {
        if (pthread_create(&thread, 0, waiter, 0) != 0) return fail("pthread_create");
        clock = CLOCK_THREAD_CPUTIME_ID;
    } else {
        child = fork();
        if (child < 0) return fail("fork");
        if (child == 0) {
            for (;;) pause();
        }
        int e = clock_getcpuclockid(child, &clock);
        if (e != 0) {
            errno = e;
            return fail("clock_getcpuclockid");
        }
    }
    struct sigevent ev = {0};
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGRTMIN + 1;
    timer_t t;
    if (timer_create(clock, &ev, &t) != 0) return fail("timer_create");
    struct itimerspec spec = {{0, 0}, {1000, 0}};
    if (timer_settime(t, 0, &spec, 0) != 0) return fail("timer_settime");
    fprintf(out, "timer %d clock %d\n", (int)(intptr_t)t, (int)clock);
    if (write(ack, "R", 1) != 1) return fail("ack");

    char c;
    while (read(ctl, &c, 1) == 1) {
        if (c == 'q') break;
        if (c != 'v') continue;
        struct itimerspec now;
        if (timer_gettime(t, &now) != 0)
            fprintf(out, "timer_gettime: %s\n", strerror(errno));
        else if (now.it_value.tv_sec == 0 && now.it_value.tv_nsec == 0)
            fprintf(out, "disarmed\n");
        else if (thread_mode && pthread_kill(thread, 0) != 0)
            fprintf(out, "the second thread is gone\n");
        else if (!thread_mode && waitpid(child, 0, WNOHANG) != 0)
            fprintf(out, "the child is gone\n");
        else
            fprintf(out, "ok\n");
        if (write(ack, "A", 1) != 1) return fail("ack");
    }
    if (child > 0) {
        kill(child, SIGKILL);
        waitpid(child, 0, 0);
    }
    return 0;
}
