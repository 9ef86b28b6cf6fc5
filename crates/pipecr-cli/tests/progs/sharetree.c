#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
/* argv: CTL ACK SIZE_MIB SHARED NPROC. Maps SIZE_MIB of anonymous memory, shared
   (MAP_SHARED | MAP_ANONYMOUS) when SHARED is 1, else private, writes a non-zero pattern
   over every page, then forks NPROC - 1 children, which inherit the area (shared, or
   copy-on-write) and wait. Writes "ready\n" to ACK, then serves bytes read from CTL:
   'v' verifies the pattern in the parent and has the last child write a byte that the
   parent must see in shared memory (ack 'y' or 'n'); 'q' kills and reaps the children,
   then exits 0. Used by benches/shared_tree.rs. */
static unsigned char *area;
static unsigned long npages;
static unsigned char pattern(unsigned long page) { return (unsigned char)(page % 251 + 1); }
int main(int argc, char **argv) {
    if (argc != 6) return 2;
    unsigned long size = strtoul(argv[3], 0, 10) << 20;
    int shared = argv[4][0] == '1';
    int nproc = atoi(argv[5]);
    npages = size / 4096;
    area = mmap(0, size, PROT_READ | PROT_WRITE, (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED || nproc < 1 || nproc > 64) return 2;
    for (unsigned long p = 0; p < npages; p++) memset(area + p * 4096, pattern(p), 4096);
    int ctl = open(argv[1], O_RDONLY);
    int ack = open(argv[2], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    int poke[2], reply[2];
    if (pipe(poke) || pipe(reply)) return 2;
    pid_t kids[64];
    for (int i = 0; i < nproc - 1; i++) {
        kids[i] = fork();
        if (kids[i] < 0) return 2;
        if (kids[i] == 0) {
            close(ctl);
            close(ack);
            close(poke[1]);
            close(reply[0]);
            /* Only the last child serves pokes: a byte read is written at the area's
               last byte (visible to the parent only when shared), then acknowledged. */
            char b;
            if (i == nproc - 2)
                while (read(poke[0], &b, 1) == 1) {
                    area[size - 1] = b;
                    if (write(reply[1], &b, 1) != 1) _exit(3);
                }
            for (;;) pause();
        }
    }
    close(poke[0]);
    close(reply[1]);
    if (write(ack, "ready\n", 6) != 6) return 2;
    char c;
    int round = 0;
    while (read(ctl, &c, 1) == 1) {
        if (c == 'q') break;
        int ok = 1;
        for (unsigned long p = 0; p + 1 < npages && ok; p++)
            for (int b = 0; b < 4096; b++)
                if (area[p * 4096 + b] != pattern(p)) {
                    ok = 0;
                    break;
                }
        if (shared && nproc > 1) {
            char b = (char)(100 + round++ % 100);
            char r;
            if (write(poke[1], &b, 1) != 1 || read(reply[0], &r, 1) != 1 || area[size - 1] != b) ok = 0;
        }
        if (write(ack, ok ? "y" : "n", 1) != 1) return 2;
    }
    for (int i = 0; i < nproc - 1; i++) kill(kids[i], SIGKILL);
    while (wait(NULL) > 0) {
    }
    return 0;
}
