#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>
/* argv: CTL ACK CCTL CACK. Maps 64 pages of private anonymous memory, writes byte i+1
   over page i, forks a child sharing them copy-on-write. Then the child writes 200+i
   over pages 10-19 (its own copies), drops pages 20-29 (MADV_DONTNEED: zeros) and makes
   the area read-only; the parent writes 100+i over pages 30-39 and drops pages 40-44.
   Pages 0-9 and 45-63 stay shared. Once both are done the parent writes the area's
   address to ACK as 16 hex digits and '\n'. Each then serves its control FIFO (parent
   CTL/ACK, child CCTL/CACK): 'v' checks its own expected contents (ack 'y' or 'n');
   'q' exits (the parent kills and reaps the child first). Used by tests/restore_cow.rs. */
#define PAGES 64
#define PG 4096
static unsigned char *area;
static unsigned char expect(int child, int i) {
    if (child && i >= 10 && i < 20) return (unsigned char)(200 + i);
    if (child && i >= 20 && i < 30) return 0;
    if (!child && i >= 30 && i < 40) return (unsigned char)(100 + i);
    if (!child && i >= 40 && i < 45) return 0;
    return (unsigned char)(i + 1);
}
static int check(int child) {
    for (int i = 0; i < PAGES; i++)
        for (int b = 0; b < PG; b++)
            if (area[i * PG + b] != expect(child, i)) return 0;
    return 1;
}
static int serve(const char *ctlp, const char *ackp, int child, pid_t pid) {
    int ctl = open(ctlp, O_RDONLY);
    int ack = open(ackp, O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    char c;
    for (;;) {
        if (read(ctl, &c, 1) != 1) return 3;
        if (c == 'q') {
            if (pid > 0) {
                kill(pid, SIGKILL);
                waitpid(pid, 0, 0);
            }
            return 0;
        }
        char r = check(child) ? 'y' : 'n';
        if (write(ack, &r, 1) != 1) return 4;
    }
}
int main(int argc, char **argv) {
    if (argc != 5) return 2;
    /* A page of hole on each side: the area is never merged with a neighbour. */
    unsigned char *m = mmap(0, (PAGES + 2) * PG, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 2;
    munmap(m, PG);
    munmap(m + (PAGES + 1) * PG, PG);
    area = m + PG;
    for (int i = 0; i < PAGES; i++) memset(area + i * PG, i + 1, PG);
    int done[2];
    if (pipe(done) < 0) return 2;
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(done[0]);
        for (int i = 10; i < 20; i++) memset(area + i * PG, 200 + i, PG);
        madvise(area + 20 * PG, 10 * PG, MADV_DONTNEED);
        mprotect(area, PAGES * PG, PROT_READ);
        if (write(done[1], "d", 1) != 1) return 2;
        close(done[1]);
        return serve(argv[3], argv[4], 1, 0);
    }
    close(done[1]);
    for (int i = 30; i < 40; i++) memset(area + i * PG, 100 + i, PG);
    madvise(area + 40 * PG, 5 * PG, MADV_DONTNEED);
    char c;
    if (read(done[0], &c, 1) != 1) return 2;
    close(done[0]);
    int ack = open(argv[2], O_WRONLY);
    if (ack < 0) return 2;
    char msg[32];
    int n = snprintf(msg, sizeof msg, "%016lx\n", (unsigned long)area);
    if (write(ack, msg, n) != n) return 2;
    close(ack);
    return serve(argv[1], argv[2], 0, pid);
}
