#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
/* argv: OUT CTL ACK. Three POSIX timers:
     A: CLOCK_MONOTONIC, SIGEV_SIGNAL SIGRTMIN+2 with sival_int 1111, every 20 ms;
     B: CLOCK_REALTIME, SIGEV_SIGNAL SIGRTMIN+3 with sival_int 2222, one-shot, fired once
        before the ready ack (so disarmed);
     C: CLOCK_MONOTONIC, SIGEV_THREAD_ID to a second thread, SIGRTMIN+4 with sival_int
        3333, one-shot in 1000 s;
     D: CLOCK_MONOTONIC, SIGEV_SIGNAL SIGRTMIN+5 (blocked) with sival_int 4444, every
        1 ms: one signal is taken with sigtimedwait after several periods, so its overrun
        is N > 0, and D's next signal stays pending (the overrun stays N).
   Handlers (SA_SIGINFO) check si_value, si_timerid (against the timer_t) and, for C, the
   receiving thread. After setup it prints "ids A B C D overrun N" and writes an ack byte
   to ACK. 'o' prints "overrun M", timer_getoverrun of D now.
   Per byte read from CTL: 'q' exits 0; 'v' verifies from inside through the saved timer_t
   values (timer_gettime works on each; A keeps its 20 ms period and ticks on schedule;
   B stays disarmed and silent; C has 900..1000 s left, and re-armed for 10 ms it fires
   in the second thread with its value and id), prints "ok" or what differs, then acks. */
static timer_t ta, tb, tc, td;
static volatile int worker_tid;
static volatile sig_atomic_t a_ticks, b_count, c_count, bad;
static void on_a(int s, siginfo_t *si, void *u) {
    (void)s; (void)u;
    if (si->si_code != SI_TIMER || si->si_value.sival_int != 1111 ||
        si->si_timerid != (int)(intptr_t)ta)
        bad |= 1;
    a_ticks += 1 + si->si_overrun;
}
static void on_b(int s, siginfo_t *si, void *u) {
    (void)s; (void)u;
    if (si->si_code != SI_TIMER || si->si_value.sival_int != 2222 ||
        si->si_timerid != (int)(intptr_t)tb)
        bad |= 2;
    b_count++;
}
static void on_c(int s, siginfo_t *si, void *u) {
    (void)s; (void)u;
    if (si->si_code != SI_TIMER || si->si_value.sival_int != 3333 ||
        si->si_timerid != (int)(intptr_t)tc || syscall(SYS_gettid) != worker_tid)
        bad |= 4;
    c_count++;
}
static void *worker(void *arg) {
    (void)arg;
    /* The timer signals other than C's are the main thread's. */
    sigset_t others;
    sigemptyset(&others);
    sigaddset(&others, SIGRTMIN + 2);
    sigaddset(&others, SIGRTMIN + 3);
    sigaddset(&others, SIGRTMIN + 5);
    pthread_sigmask(SIG_BLOCK, &others, 0);
    worker_tid = syscall(SYS_gettid);
    for (;;) pause();
    return 0;
}
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
static void nap(void) {
    struct timespec d = {0, 2000000};
    nanosleep(&d, 0);
}
static int handler(int sig, void (*f)(int, siginfo_t *, void *)) {
    struct sigaction sa = {0};
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sa.sa_sigaction = f;
    return sigaction(sig, &sa, 0);
}
static int make(clockid_t clock, int notify, int sig, int value, int tid, timer_t *t) {
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = notify;
    ev.sigev_signo = sig;
    ev.sigev_value.sival_int = value;
    ev._sigev_un._tid = tid;
    return timer_create(clock, &ev, t);
}
static int arm(timer_t t, long sec, long nsec, long isec, long insec) {
    struct itimerspec it = {{isec, insec}, {sec, nsec}};
    return timer_settime(t, 0, &it, 0);
}
static void verify(void) {
    char why[512] = "";
    size_t n = 0;
#define DIFF(...) n += snprintf(why + n, n < sizeof why ? sizeof why - n : 0, __VA_ARGS__)
    struct itimerspec a, b, c, d;
    if (timer_gettime(ta, &a)) DIFF(" A:timer_gettime:%s", strerror(errno));
    if (timer_gettime(tb, &b)) DIFF(" B:timer_gettime:%s", strerror(errno));
    if (timer_gettime(tc, &c)) DIFF(" C:timer_gettime:%s", strerror(errno));
    if (timer_gettime(td, &d)) DIFF(" D:timer_gettime:%s", strerror(errno));
    if (n == 0) {
        if (a.it_interval.tv_sec != 0 || a.it_interval.tv_nsec != 20000000)
            DIFF(" A:interval=%ld.%09ld", (long)a.it_interval.tv_sec, a.it_interval.tv_nsec);
        if (b.it_value.tv_sec || b.it_value.tv_nsec || b.it_interval.tv_sec || b.it_interval.tv_nsec)
            DIFF(" B:armed(%ld.%09ld)", (long)b.it_value.tv_sec, b.it_value.tv_nsec);
        if (c.it_value.tv_sec < 900 || c.it_value.tv_sec >= 1000)
            DIFF(" C:left=%ld", (long)c.it_value.tv_sec);
        if (d.it_interval.tv_sec != 0 || d.it_interval.tv_nsec != 1000000)
            DIFF(" D:interval=%ld.%09ld", (long)d.it_interval.tv_sec, d.it_interval.tv_nsec);
    }
    /* A ticks on schedule: 10 periods take about 200 ms, never much less. */
    int start = a_ticks;
    double t0 = now();
    while (a_ticks < start + 10 && now() - t0 < 5) nap();
    double took = now() - t0;
    if (a_ticks < start + 10) DIFF(" A:ticks=%d/10", a_ticks - start);
    else if (took < 0.15) DIFF(" A:10-ticks-in=%.3fs", took);
    /* C fires in the worker thread once re-armed. */
    int cs = c_count;
    if (arm(tc, 0, 10000000, 0, 0)) DIFF(" C:timer_settime:%s", strerror(errno));
    t0 = now();
    while (c_count == cs && now() - t0 < 5) nap();
    if (c_count != cs + 1) DIFF(" C:count=%d", c_count - cs);
    if (b_count != 1) DIFF(" B:count=%d", (int)b_count);
    if (bad) DIFF(" siginfo-mismatch=%d", (int)bad);
    if (n == 0) printf("ok\n");
    else printf("differs:%s\n", why);
    fflush(stdout);
}
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    if (handler(SIGRTMIN + 2, on_a) || handler(SIGRTMIN + 3, on_b) || handler(SIGRTMIN + 4, on_c))
        return 2;
    /* Only the worker takes C's signal (it is aimed at it anyway). */
    sigset_t cset;
    sigemptyset(&cset);
    sigaddset(&cset, SIGRTMIN + 4);
    sigaddset(&cset, SIGRTMIN + 5);
    pthread_t w;
    if (pthread_create(&w, 0, worker, 0)) return 2;
    pthread_sigmask(SIG_BLOCK, &cset, 0);
    while (!worker_tid) nap();
    if (make(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 2, 1111, 0, &ta)) return 3;
    if (make(CLOCK_REALTIME, SIGEV_SIGNAL, SIGRTMIN + 3, 2222, 0, &tb)) return 3;
    if (make(CLOCK_MONOTONIC, SIGEV_THREAD_ID, SIGRTMIN + 4, 3333, worker_tid, &tc)) return 3;
    if (make(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 5, 4444, 0, &td)) return 3;
    if (arm(ta, 0, 20000000, 0, 20000000) || arm(tb, 0, 1000000, 0, 0) || arm(tc, 1000, 0, 0, 0) ||
        arm(td, 0, 1000000, 0, 1000000))
        return 4;
    double t0 = now();
    while (b_count == 0 && now() - t0 < 5) nap();
    if (b_count != 1) return 5;
    /* D's first signal waits (blocked) while D expires again: taken now, it carries the
       overrun; D's next one stays pending, so timer_getoverrun keeps saying so. */
    nap();
    nap();
    sigset_t dset;
    sigemptyset(&dset);
    sigaddset(&dset, SIGRTMIN + 5);
    siginfo_t si;
    struct timespec wait = {5, 0};
    if (sigtimedwait(&dset, &si, &wait) != SIGRTMIN + 5 || si.si_value.sival_int != 4444) return 5;
    int overrun = timer_getoverrun(td);
    if (overrun < 1 || overrun != si.si_overrun) return 5;
    printf("ids %d %d %d %d overrun %d\n", (int)(intptr_t)ta, (int)(intptr_t)tb,
           (int)(intptr_t)tc, (int)(intptr_t)td, overrun);
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
        if (ch == 'q') return 0;
        if (ch == 'v') verify();
        if (ch == 'o') {
            printf("overrun %d\n", timer_getoverrun(td));
            fflush(stdout);
        }
        if (write(ack, "a", 1) != 1) return 2;
    }
}
