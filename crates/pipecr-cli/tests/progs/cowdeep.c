#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
/* argv: OUT CTL ACK. A parent P maps 64 pages of private anonymous memory and writes
   byte i+1 over page i; forks a child C, which forks a grandchild G; then C writes 200+i
   over every page (its own copies). So the pages are shared copy-on-write by P and its
   grandchild G only: none with C, the process in between. Once done P writes "area ADDR C G\n" (hex address,
   decimal pids) to OUT and acks on ACK. Per byte read from CTL: 'v' has each of the
   three check its own expected contents, prints "ok" or who differs to OUT, then acks;
   'q' ends G and C and exits 0. */
#define PAGES 64
#define PG 4096
static unsigned char *area;
static int to_c[2], from_c[2], to_g[2], from_g[2];
static unsigned char expect(int c, int i) {
    if (c) return (unsigned char)(200 + i);
    return (unsigned char)(i + 1);
}
static int check(int c) {
    for (int i = 0; i < PAGES; i++)
        for (int b = 0; b < PG; b++)
            if (area[i * PG + b] != expect(c, i)) return 0;
    return 1;
}
static void serve(int in, int out, int c) {
    for (;;) {
        char m;
        ssize_t n = read(in, &m, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n != 1 || m == 'q') _exit(0);
        char r = check(c) ? 'y' : 'n';
        if (write(out, &r, 1) != 1) _exit(3);
    }
}
static char ask(int *to, int *from) {
    char r = 0;
    if (write(to[1], "v", 1) != 1 || read(from[0], &r, 1) != 1) return 0;
    return r;
}
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0) return 2;
    area = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) return 2;
    for (int i = 0; i < PAGES; i++) memset(area + i * PG, i + 1, PG);
    if (pipe(to_c) || pipe(from_c) || pipe(to_g) || pipe(from_g)) return 2;
    int ready[2];
    if (pipe(ready)) return 2;
    pid_t g = -1;
    pid_t c = fork();
    if (c < 0) return 2;
    if (c == 0) {
        g = fork();
        if (g < 0) _exit(2);
        if (g == 0) serve(to_g[0], from_g[1], 0);
        for (int i = 0; i < PAGES; i++) memset(area + i * PG, 200 + i, PG);
        if (write(ready[1], &g, sizeof g) != sizeof g) _exit(2);
        serve(to_c[0], from_c[1], 1);
    }
    if (read(ready[0], &g, sizeof g) != sizeof g) return 2;
    close(ready[0]);
    close(ready[1]);
    dprintf(out, "area %lx %d %d\n", (unsigned long)area, c, g);
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    if (write(ack, "r", 1) != 1) return 2;
    for (;;) {
        char m;
        ssize_t n = read(ctl, &m, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n != 1) return 2;
        if (m == 'q') {
            kill(g, SIGKILL);
            kill(c, SIGKILL);
            waitpid(c, 0, 0);
            return 0;
        }
        const char *res = !check(0) ? "P differs\n"
                          : ask(to_c, from_c) != 'y' ? "C differs\n"
                          : ask(to_g, from_g) != 'y' ? "G differs\n"
                                                     : "ok\n";
        if (write(out, res, strlen(res)) < 0) return 2;
        if (write(ack, "k", 1) != 1) return 2;
    }
}
