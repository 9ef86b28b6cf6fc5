/* A tree that never stops changing, for the freeze rescan test.
 *
 * The root (started in its own process group by the test):
 * - two spawner threads create threads nonstop: most exit at once, every 16th stays
 *   (blocked in pause()) up to 32 per spawner;
 * - the main thread forks a child every millisecond up to MAX_CHILDREN; a child pauses,
 *   or forks a grandchild and pauses, or (the first few) spawns threads nonstop itself;
 * - each millisecond the main thread writes a progress record on stdout: a sequence
 *   number and the number of threads the root's spawners have created so far
 *   (two native-endian uint32). The first record is written once both spawners run.
 * No process of the tree ever exits on its own: the test kills the process group.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_CHILDREN 240
#define KEPT_PER_SPAWNER 32

static atomic_uint created;

static void *short_lived(void *arg) { return arg; }

static void *long_lived(void *arg) {
    for (;;) pause();
    return arg;
}

static void *spawner(void *arg) {
    unsigned kept = 0, n = 0;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (;;) {
        pthread_t t;
        int keep = (++n % 16 == 0) && kept < KEPT_PER_SPAWNER;
        if (pthread_create(&t, &attr, keep ? long_lived : short_lived, NULL) == 0) {
            kept += keep;
            atomic_fetch_add(&created, 1);
        }
    }
    return arg;
}

static void start_spawner(void) {
    pthread_t t;
    if (pthread_create(&t, NULL, spawner, NULL) != 0) _exit(3);
}

static void child(int i) {
    if (i % 3 == 1) {
        pid_t g = fork();
        if (g < 0) _exit(4);
    } else if (i % 3 == 2 && i < 6) {
        start_spawner();
    }
    for (;;) pause();
}

int main(void) {
    start_spawner();
    start_spawner();
    while (atomic_load(&created) < 2) sched_yield();
    uint32_t rec[2] = {0, 0};
    for (int i = 0;; i++) {
        if (i < MAX_CHILDREN) {
            pid_t pid = fork();
            if (pid < 0) _exit(2);
            if (pid == 0) child(i);
        }
        rec[0]++;
        rec[1] = atomic_load(&created);
        if (write(1, rec, sizeof rec) != sizeof rec) _exit(1);
        usleep(1000);
    }
}
