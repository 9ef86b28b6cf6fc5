#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
/* argv: OUT CTL ACK. Four threads and the main one. The main thread reads one command
   byte from CTL per step and hands it to the workers through two barriers (so every
   worker is blocked in a futex wait between steps):
     'n': each worker increments its counter (in memory and in a __thread copy);
     'w': each worker computes for a while, yielding, and checks sched_getcpu() (read by
          glibc from the thread's rseq area) against the getcpu syscall;
     'q': the workers return, the main thread joins them (which needs each thread's
          clear_child_tid) and exits 0 if no check ever failed, else 1.
   After each step it prints "TID... | C0 C1 C2 C3 | ERRORS" to stdout (OUT) and writes an
   ack byte to ACK. Each worker checks on every step that its __thread values and its TID
   are still its own. */
#define N 4
static volatile unsigned long counters[N];
static volatile pid_t tids[N];
static volatile int errors;
static volatile char cmd;
static pthread_barrier_t go, done;
static __thread int my_index = -1;
static __thread unsigned long my_count;

static void fail(void) { __atomic_add_fetch(&errors, 1, __ATOMIC_SEQ_CST); }

static int cpu_ok(void) {
    /* The two may differ if the thread migrates in between: retry. */
    for (int i = 0; i < 1000; i++) {
        unsigned cpu = 0;
        int a = sched_getcpu();
        if (syscall(SYS_getcpu, &cpu, NULL, NULL) != 0) return 0;
        int b = sched_getcpu();
        if (a == (int)cpu && b == (int)cpu) return 1;
    }
    return 0;
}

static void work(int i) {
    volatile unsigned long x = (unsigned long)i;
    for (int round = 0; round < 400; round++) {
        for (int k = 0; k < 200000; k++) x = x * 6364136223846793005UL + 1442695040888963407UL;
        if (my_index != i || !cpu_ok()) fail();
        sched_yield();
    }
}

static void *worker(void *arg) {
    int i = (int)(long)arg;
    my_index = i;
    tids[i] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&done);
    for (;;) {
        pthread_barrier_wait(&go);
        if (my_index != i || (pid_t)syscall(SYS_gettid) != tids[i] || my_count != counters[i])
            fail();
        if (cmd == 'q') return NULL;
        if (cmd == 'n') {
            counters[i]++;
            my_count++;
        } else if (cmd == 'w') {
            work(i);
        }
        pthread_barrier_wait(&done);
    }
    return NULL;
}

static void report(void) {
    for (int i = 0; i < N; i++) printf("%d ", (int)tids[i]);
    printf("|");
    for (int i = 0; i < N; i++) printf(" %lu", counters[i]);
    printf(" | %d\n", errors);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    pthread_barrier_init(&go, NULL, N + 1);
    pthread_barrier_init(&done, NULL, N + 1);
    pthread_t threads[N];
    for (long i = 0; i < N; i++)
        if (pthread_create(&threads[i], NULL, worker, (void *)i) != 0) return 2;
    pthread_barrier_wait(&done);
    report();
    if (write(ack, "a", 1) != 1) return 4;
    char c;
    for (;;) {
        if (read(ctl, &c, 1) != 1) return 3;
        cmd = c;
        pthread_barrier_wait(&go);
        if (c == 'q') {
            for (int i = 0; i < N; i++)
                if (pthread_join(threads[i], NULL) != 0) return 5;
            return errors ? 1 : 0;
        }
        pthread_barrier_wait(&done);
        report();
        if (write(ack, "a", 1) != 1) return 4;
    }
}
