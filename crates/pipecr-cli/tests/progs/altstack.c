#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
/* argv: OUT CTL ACK. The main thread and a second thread each install their own
   alternate signal stack (sigaltstack); SIGUSR1 has an SA_ONSTACK handler that records
   whether a local variable of the handler lies on the alternate stack of the thread it
   runs in. Per byte read from CTL ('q': exit 0) the main thread signals itself and the
   second thread, waits for both handlers, and prints for each thread "main=" / "other="
   followed by "alt" (the handler ran on that thread's alternate stack), "off" (it did
   not) and "same" or "moved" (sigaltstack(NULL, &old) still reports the stack it
   installed), then writes an ack byte to ACK. */
#define ALT_SIZE (64 * 1024)
static char main_alt[ALT_SIZE], other_alt[ALT_SIZE];
static volatile int on_alt[2], ran[2];
static pthread_t other;
static volatile int other_ready;
static volatile pid_t other_tid;
static __thread int slot; /* 0 main, 1 other */
static __thread char *alt_base;

static void on_usr1(int s) {
    (void)s;
    char local;
    uintptr_t a = (uintptr_t)&local, b = (uintptr_t)alt_base;
    on_alt[slot] = a >= b && a < b + ALT_SIZE;
    __atomic_store_n(&ran[slot], 1, __ATOMIC_SEQ_CST);
}

static int install(char *base) {
    stack_t ss = {.ss_sp = base, .ss_size = ALT_SIZE, .ss_flags = 0};
    alt_base = base;
    return sigaltstack(&ss, 0);
}

static const char *check(char *base) {
    stack_t old;
    if (sigaltstack(0, &old)) return "error";
    return old.ss_sp == base && old.ss_size == ALT_SIZE && old.ss_flags == 0 ? "same" : "moved";
}

static const char *other_check = "unknown";

/* Whether the other thread sleeps in pause() (its /proc syscall line starts with the
   number of pause): a signal sent before it gets there would be handled and leave it
   asleep in pause() with nothing to report. */
static int other_in_pause(void) {
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)other_tid);
    int f = open(path, O_RDONLY);
    if (f < 0) return 0;
    ssize_t n = read(f, buf, sizeof buf - 1);
    close(f);
    if (n <= 0) return 0;
    buf[n] = 0;
    char want[16];
    snprintf(want, sizeof want, "%d ", SYS_pause);
    return strncmp(buf, want, strlen(want)) == 0;
}

static void *run_other(void *arg) {
    (void)arg;
    slot = 1;
    if (install(other_alt)) return 0;
    other_tid = (pid_t)syscall(SYS_gettid);
    __atomic_store_n(&other_ready, 1, __ATOMIC_SEQ_CST);
    for (;;) {
        pause();
        other_check = check(other_alt);
    }
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_flags = SA_RESTART | SA_ONSTACK;
    sa.sa_handler = on_usr1;
    if (sigaction(SIGUSR1, &sa, 0)) return 2;
    if (install(main_alt)) return 2;
    if (pthread_create(&other, 0, run_other, 0)) return 2;
    while (!__atomic_load_n(&other_ready, __ATOMIC_SEQ_CST)) sched_yield();
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    char c;
    for (;;) {
        ssize_t n = read(ctl, &c, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n != 1) return 3;
        if (c == 'q') return 0;
        ran[0] = ran[1] = on_alt[0] = on_alt[1] = 0;
        while (!other_in_pause()) sched_yield();
        if (pthread_kill(other, SIGUSR1) || raise(SIGUSR1)) return 4;
        while (!__atomic_load_n(&ran[1], __ATOMIC_SEQ_CST)) sched_yield();
        /* The other thread checks its stack once its pause() returns. */
        while (__atomic_load_n(&other_check, __ATOMIC_SEQ_CST)[0] == 'u') sched_yield();
        printf("main=%s,%s other=%s,%s\n", on_alt[0] ? "alt" : "off", check(main_alt),
               on_alt[1] ? "alt" : "off", other_check);
        other_check = "unknown";
        fflush(stdout);
        if (write(ack, "a", 1) != 1) return 4;
    }
}
