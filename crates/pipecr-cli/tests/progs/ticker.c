#include <stdio.h>
#include <time.h>
/* argv: ADDR. Writes the address of its counter to ADDR (then closes it), and counts on
   its own, forever: each step increments the in-memory counter, then either sleeps 1 ms
   (odd steps) or spins briefly (even steps), so a dump meets it both inside a syscall and
   computing. It keeps no regular file open: the test reads the counter through
   /proc/PID/mem, so nothing on disk changes between a dump and its restore. */
static volatile unsigned long counter;
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    FILE *addr = fopen(argv[1], "w");
    if (!addr) return 2;
    fprintf(addr, "%lx\n", (unsigned long)&counter);
    if (fclose(addr) != 0) return 2;
    struct timespec ms = {0, 1000000};
    for (;;) {
        counter++;
        if (counter & 1) {
            nanosleep(&ms, NULL);
        } else {
            for (volatile unsigned long i = 0; i < 200000; i++) {
            }
        }
    }
}
