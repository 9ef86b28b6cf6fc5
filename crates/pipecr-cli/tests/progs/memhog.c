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
/* argv: CTL ACK SIZE_MIB TOUCH_MIB FILL FORK. Maps SIZE_MIB of private anonymous memory
   and, if FILL is 1, writes a non-zero pattern into TOUCH_MIB of it: every page when
   TOUCH_MIB == SIZE_MIB, else pages spread evenly. With FORK 1 it then forks a child
   that shares the area copy-on-write and waits (killed with its parent). It writes the
   area's address to ACK as 16 hex digits and '\n', then serves bytes read from CTL:
   'v' verifies the pattern (ack 'y' or 'n'), 'q' kills and reaps the child, then exits 0. Used by benches/mem_roundtrip.rs. */
static unsigned char *area;
static unsigned long npages, stride;
static unsigned char pattern(unsigned long page) { return (unsigned char)(page % 251 + 1); }
int main(int argc, char **argv) {
    if (argc != 7) return 2;
    unsigned long size = strtoul(argv[3], 0, 10) << 20, touch = strtoul(argv[4], 0, 10) << 20;
    int fill = argv[5][0] == '1', do_fork = argv[6][0] == '1';
    npages = size / 4096;
    stride = npages / (touch / 4096);
    area = mmap(0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) return 2;
    if (fill)
        for (unsigned long p = 0; p < npages; p += stride) memset(area + p * 4096, pattern(p), 4096);
    int ctl = open(argv[1], O_RDONLY);
    int ack = open(argv[2], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    pid_t pid = 0;
    if (do_fork) {
        pid = fork();
        if (pid < 0) return 2;
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            for (;;) pause();
        }
    }
    char msg[18];
    snprintf(msg, sizeof msg, "%016lx\n", (unsigned long)area);
    if (write(ack, msg, 17) != 17) return 3;
    char c;
    for (;;) {
        if (read(ctl, &c, 1) != 1) return 3;
        if (c == 'q') {
            /* Reaped here, so its PID is free as soon as we are gone. */
            if (pid > 0 && (kill(pid, SIGKILL) != 0 || waitpid(pid, 0, 0) != pid)) return 5;
            return 0;
        }
        int ok = 1;
        for (unsigned long p = 0; p < npages; p += stride) {
            unsigned char *pg = area + p * 4096;
            if (pg[0] != pattern(p) || pg[2048] != pattern(p) || pg[4095] != pattern(p)) ok = 0;
        }
        if (write(ack, ok ? "y" : "n", 1) != 1) return 4;
    }
}
