#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
/* Four threads, each ticking on its own timer (a 10 ms nanosleep) and printing
   "thread I tick N" on stdout, one write(2) per line, N counting from 1 with no gap. The
   main thread waits for SIGTERM with sigwait (blocked in every thread), then stops the
   workers, joins them (which needs each thread's clear_child_tid) and prints
   "joined after ticks N0 N1 N2 N3" (each worker's last tick), and exits 0. */
#define N 4
static int stop;
static unsigned long ticks[N];

static void *worker(void *arg) {
    int i = (int)(long)arg;
    const struct timespec period = {0, 10 * 1000 * 1000};
    while (!__atomic_load_n(&stop, __ATOMIC_SEQ_CST)) {
        nanosleep(&period, NULL);
        ticks[i]++;
        char line[64];
        int len = snprintf(line, sizeof line, "thread %d tick %lu\n", i, ticks[i]);
        if (write(1, line, (size_t)len) != len) _exit(2);
    }
    return NULL;
}

int main(void) {
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, NULL);
    pthread_t threads[N];
    for (int i = 0; i < N; i++)
        if (pthread_create(&threads[i], NULL, worker, (void *)(long)i) != 0) return 3;
    int sig = 0;
    if (sigwait(&term, &sig) != 0) return 4;
    __atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < N; i++)
        if (pthread_join(threads[i], NULL) != 0) return 5;
    printf("joined after ticks %lu %lu %lu %lu\n", ticks[0], ticks[1], ticks[2], ticks[3]);
    return 0;
}
