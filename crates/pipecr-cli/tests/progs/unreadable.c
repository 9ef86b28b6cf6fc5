#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
/* argv: OUT CTL ACK. Memory that cannot be read as it stands:
     A: 3 pages written, then mprotect(PROT_NONE);
     B: 2 pages written, then mprotect(PROT_WRITE) (write-only);
     C: 5 pages written, page 2 made a guard region (madvise(MADV_GUARD_INSTALL),
        Linux 6.13+), its neighbours keep their bytes;
     D: a classic guard: page 0 PROT_NONE with nothing in it, pages 1-2 written;
     E: 3 pages of shared anonymous memory written, page 1 a guard region;
     F: 3 pages of a file (OUT.map) mapped shared, written, page 1 a guard region.
   Every written page holds its own byte pattern. After setup it prints
   "areas A B C D E F" (addresses in hex) then one line per area as /proc/self/maps
   shows it, and writes an ack byte to ACK.
   Per byte read from CTL: 'q' exits 0; 'v' verifies from inside: the /proc/self/maps
   lines of the areas are the ones printed before; A and B, given PROT_READ for the
   check (then their protection back), hold their bytes; a touch of C's page 2 and of D's
   page 0 (and of E's and F's page 1) raises SIGSEGV (caught, siglongjmp), their other
   pages hold their bytes;
   prints "ok" or what differs, then acks. */
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#define PAGE 4096
static char *a, *b, *c, *d, *e, *f;
static char before[6][256];
static sigjmp_buf jump;
static volatile sig_atomic_t faults;
static void on_segv(int s) {
    (void)s;
    faults++;
    siglongjmp(jump, 1);
}
static unsigned char pattern(char *base, int page, int i) {
    return (unsigned char)(((uintptr_t)base >> 12) * 7 + page * 31 + i * 13);
}
static void fill(char *base, int page) {
    for (int i = 0; i < PAGE; i++) base[page * PAGE + i] = (char)pattern(base, page, i);
}
static int holds(char *base, int page) {
    for (int i = 0; i < PAGE; i++)
        if ((unsigned char)base[page * PAGE + i] != pattern(base, page, i)) return 0;
    return 1;
}
/* The /proc/self/maps line of the area starting at `at`, as "RANGE PERMS OFFSET PATH":
   without device and inode (shared anonymous memory is a new object after a restore). */
static void maps_line(char *at, char *out, size_t len) {
    char want[32], line[512];
    snprintf(want, sizeof want, "%lx-", (unsigned long)(uintptr_t)at);
    out[0] = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, want, strlen(want)) == 0) {
            char range[64], perms[8], off[32];
            int path_at = 0;
            line[strcspn(line, "\n")] = 0;
            if (sscanf(line, "%63s %7s %31s %*s %*s %n", range, perms, off, &path_at) == 3)
                snprintf(out, len, "%s %s %s %s", range, perms, off, line + path_at);
            break;
        }
    fclose(f);
}
static int touch_faults(volatile char *p) {
    int before_faults = faults;
    if (sigsetjmp(jump, 1) == 0) {
        char v = *p;
        (void)v;
    }
    return faults == before_faults + 1;
}
static char *area(size_t pages) {
    char *p = mmap(0, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? 0 : p;
}
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sa.sa_flags = SA_NODEFER;
    if (sigaction(SIGSEGV, &sa, 0)) return 3;
    /* Separate areas: a gap page between them keeps the kernel from merging them. */
    char *all = area(20);
    if (!all) return 3;
    a = all, b = all + 4 * PAGE, c = all + 7 * PAGE, d = all + 13 * PAGE;
    munmap(all + 3 * PAGE, PAGE);
    munmap(all + 6 * PAGE, PAGE);
    munmap(all + 12 * PAGE, PAGE);
    munmap(all + 16 * PAGE, 4 * PAGE);
    for (int p = 0; p < 3; p++) fill(a, p);
    for (int p = 0; p < 2; p++) fill(b, p);
    for (int p = 0; p < 5; p++) fill(c, p);
    for (int p = 1; p < 3; p++) fill(d, p);
    if (mprotect(a, 3 * PAGE, PROT_NONE)) return 4;
    if (mprotect(b, 2 * PAGE, PROT_WRITE)) return 4;
    if (madvise(c + 2 * PAGE, PAGE, MADV_GUARD_INSTALL)) return 5;
    if (mprotect(d, PAGE, PROT_NONE)) return 4;
    e = mmap(0, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    char map_path[4096];
    snprintf(map_path, sizeof map_path, "%s.map", argv[1]);
    int mf = open(map_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (mf < 0 || ftruncate(mf, 3 * PAGE)) return 3;
    f = mmap(0, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mf, 0);
    close(mf);
    if (e == MAP_FAILED || f == MAP_FAILED) return 3;
    for (int p = 0; p < 3; p += 2) fill(e, p), fill(f, p);
    if (madvise(e + PAGE, PAGE, MADV_GUARD_INSTALL)) return 5;
    if (madvise(f + PAGE, PAGE, MADV_GUARD_INSTALL)) return 5;
    char *areas[6] = {a, b, c, d, e, f};
    printf("areas %lx %lx %lx %lx %lx %lx\n", (unsigned long)(uintptr_t)a,
           (unsigned long)(uintptr_t)b, (unsigned long)(uintptr_t)c,
           (unsigned long)(uintptr_t)d, (unsigned long)(uintptr_t)e,
           (unsigned long)(uintptr_t)f);
    for (int i = 0; i < 6; i++) {
        maps_line(areas[i], before[i], sizeof before[i]);
        printf("%s\n", before[i]);
    }
    fflush(stdout);
    if (write(ack, "r", 1) != 1) return 6;
    for (;;) {
        char cmd;
        if (read(ctl, &cmd, 1) != 1) return 7;
        if (cmd == 'q') return 0;
        if (cmd != 'v') continue;
        char why[2048];
        size_t n = 0;
#define DIFF(...) n += snprintf(why + n, n < sizeof why ? sizeof why - n : 0, __VA_ARGS__)
        for (int i = 0; i < 6; i++) {
            char now[256];
            maps_line(areas[i], now, sizeof now);
            if (strcmp(now, before[i])) DIFF(" maps[%d] '%s' was '%s';", i, now, before[i]);
        }
        if (mprotect(a, 3 * PAGE, PROT_READ)) DIFF(" mprotect A;");
        for (int p = 0; p < 3; p++)
            if (!holds(a, p)) DIFF(" A page %d;", p);
        mprotect(a, 3 * PAGE, PROT_NONE);
        if (mprotect(b, 2 * PAGE, PROT_READ | PROT_WRITE)) DIFF(" mprotect B;");
        for (int p = 0; p < 2; p++)
            if (!holds(b, p)) DIFF(" B page %d;", p);
        mprotect(b, 2 * PAGE, PROT_WRITE);
        if (!touch_faults(c + 2 * PAGE + 100)) DIFF(" C's guard page did not fault;");
        for (int p = 0; p < 5; p++)
            if (p != 2 && !holds(c, p)) DIFF(" C page %d;", p);
        if (!touch_faults(d + 5)) DIFF(" D's guard page did not fault;");
        for (int p = 1; p < 3; p++)
            if (!holds(d, p)) DIFF(" D page %d;", p);
        if (!touch_faults(e + PAGE + 7)) DIFF(" E's guard page did not fault;");
        if (!touch_faults(f + PAGE + 7)) DIFF(" F's guard page did not fault;");
        for (int p = 0; p < 3; p += 2) {
            if (!holds(e, p)) DIFF(" E page %d;", p);
            if (!holds(f, p)) DIFF(" F page %d;", p);
        }
        if (n == 0)
            printf("ok\n");
        else
            printf("differs:%s\n", why);
        fflush(stdout);
        if (write(ack, "v", 1) != 1) return 6;
    }
}
