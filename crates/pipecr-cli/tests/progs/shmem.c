#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
/* argv: OUT CTL ACK. Shared memory of every kind, in a parent P, its child C and its
   grandchild G:
   A  MAP_SHARED|MAP_ANONYMOUS, 16 pages, only pages 0, 1 and 5 ever touched;
   Z  a MAP_SHARED mapping of /dev/zero, 4 pages;
   M  a memfd of 8 pages, its descriptor kept open (fd MFD), mapped whole read-write and
      pages 2-3 again read-only (offset 2 pages); C maps it a third time elsewhere;
   N  a memfd mapped shared whose descriptor is closed;
   Q  a memfd mapped privately, one page then written (a private copy);
   D  a file in OUT's directory, mapped shared, then unlinked, its descriptor kept open;
   F  a file OUT.data (4 pages), mapped shared whole (F) and pages 1-3 again (F1, offset
      1 page), its descriptor closed;
   SEM a named POSIX semaphore (sem_open: /dev/shm/sem.pipecr-shmem-PID, mapped shared by
      path), which P posts and C takes; unlinked when P exits.
   C and G inherit every area (at the same addresses).
   Once set up, P writes "ready\n" to OUT and acks on ACK. Per byte read from CTL:
   'v' checks everything (contents; writes by each process seen by the others through
   every shared area; the memfd's and the deleted file's descriptors coherent with their
   mappings; sizes and protections), prints "ok" or what differs to OUT, then acks;
   'q' ends C and G and exits 0. */
#define PAGE 4096
static int out;
static char *A, *Z, *M, *M2, *N, *Q, *D, *F, *F1, *MC;
static int mfd, dfd;
static int to_c[2], from_c[2], to_g[2], from_g[2];
static char bad[4096];
static sem_t *sem;
static char sem_name[64];
static void say(const char *line) {
    if (write(out, line, strlen(line)) < 0) _exit(2);
}
static void fail(const char *what) {
    if (!bad[0]) snprintf(bad, sizeof bad, "%s", what);
}
static void fill(char *p, size_t len, int seed) {
    for (size_t i = 0; i < len; i++) p[i] = (char)(seed + i * 7);
}
static int same(const char *p, size_t len, int seed) {
    for (size_t i = 0; i < len; i++)
        if (p[i] != (char)(seed + i * 7)) return 0;
    return 1;
}
static int zero(const char *p, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (p[i]) return 0;
    return 1;
}
/* The areas another process writes and the others read: one byte each. */
static char *spots[7];
static void set_spots(void) {
    spots[0] = A + 9 * PAGE + 17;
    spots[1] = Z + 3 * PAGE + 1;
    spots[2] = M + 7 * PAGE + 5;
    spots[3] = N + PAGE + 2;
    spots[4] = D + 100;
    spots[5] = A + 15 * PAGE + 4095;
    spots[6] = F1 + 2 * PAGE + 8;
}
static void write_spots(char v) {
    for (int i = 0; i < 7; i++) *spots[i] = v;
}
static int spots_are(char v) {
    for (int i = 0; i < 7; i++)
        if (*spots[i] != v) return 0;
    return 1;
}
static char cmd(int *to, int *from, char c, char v) {
    char m[2] = {c, v}, r = 0;
    if (write(to[1], m, 2) != 2) return 0;
    if (read(from[0], &r, 1) != 1) return 0;
    return r;
}
/* C and G: serve commands from P until told to stop. */
static void serve(int in, int ack) {
    for (;;) {
        char m[2];
        ssize_t n = read(in, m, 2);
        if (n < 0 && errno == EINTR) continue;
        if (n != 2) _exit(3);
        char r = 'y';
        if (m[0] == 'w') write_spots(m[1]);
        else if (m[0] == 'c') r = spots_are(m[1]) ? 'y' : 'n';
        else if (m[0] == 's') r = sem_trywait(sem) == 0 ? 'y' : 'n';
        else if (m[0] == 'm') r = (MC == NULL || MC[7 * PAGE + 5] == m[1]) ? 'y' : 'n';
        else if (m[0] == 'q') _exit(0);
        if (write(ack, &r, 1) != 1) _exit(3);
    }
}
static int perms(void *at, const char *want, unsigned long off) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return 0;
    char line[512];
    int ok = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long s, e, o;
        char p[5];
        if (sscanf(line, "%lx-%lx %4s %lx", &s, &e, p, &o) == 4 && s == (unsigned long)at)
            ok = strcmp(p, want) == 0 && o == off;
    }
    fclose(f);
    return ok;
}
/* Whether the maps line of the area at `at` names `path`. */
static int named(void *at, const char *path) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return 0;
    char line[512];
    int ok = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long s;
        if (sscanf(line, "%lx-", &s) == 1 && s == (unsigned long)at) ok = strstr(line, path) != NULL;
    }
    fclose(f);
    return ok;
}
static int round_no = 0;
static void verify(void) {
    bad[0] = 0;
    char v = (char)('a' + round_no++ % 20);
    /* Contents. */
    if (!same(A, PAGE, 1) || !same(A + PAGE, PAGE, 2) || !same(A + 5 * PAGE, 16, 3)) fail("A contents");
    if (!zero(A + 2 * PAGE, 3 * PAGE)) fail("A untouched pages are not zero");
    if (!same(Z, 64, 4)) fail("Z contents");
    if (!same(M, 64, 5) || !same(M2, 64, 6)) fail("M contents");
    if (!same(N, 64, 7)) fail("N contents");
    if (!same(Q, 64, 9)) fail("Q private page");
    if (!same(Q + PAGE, 64, 10)) fail("Q file page");
    if (!same(D, 64, 11)) fail("D contents");
    if (!same(F + PAGE, 64, 12) || !same(F1, 64, 12)) fail("F contents");
    if (F[3 * PAGE + 8] != *spots[6]) fail("F and F1 are not one file");
    /* The private page of Q is not the memfd's. */
    /* Sizes. */
    struct stat st;
    if (fstat(mfd, &st) || st.st_size != 8 * PAGE) fail("M size");
    if (fstat(dfd, &st) || st.st_size != 3 * PAGE || st.st_nlink != 0) fail("D size or links");
    /* The shared anonymous objects keep their sizes. */
    char mf[128];
    snprintf(mf, sizeof mf, "/proc/self/map_files/%lx-%lx", (unsigned long)A, (unsigned long)A + 16 * PAGE);
    if (stat(mf, &st) || st.st_size != 16 * PAGE) fail("A's object size");
    snprintf(mf, sizeof mf, "/proc/self/map_files/%lx-%lx", (unsigned long)Z, (unsigned long)Z + 4 * PAGE);
    if (stat(mf, &st) || st.st_size != 4 * PAGE) fail("Z's object size");
    /* Protections and offsets. */
    if (!perms(A, "rw-s", 0)) fail("A maps line");
    if (!perms(Z, "rw-s", 0)) fail("Z maps line");
    if (!named(A, " /dev/zero (deleted)") || !named(Z, " /dev/zero (deleted)")) fail("A or Z is not shared anonymous memory");
    if (!named(M, " /memfd:shm-test (deleted)") || !named(N, " /memfd:mapped-only (deleted)")) fail("M or N is not its memfd");
    if (!perms(M2, "r--s", 2 * PAGE)) fail("M second mapping maps line");
    if (!perms(Q, "rw-p", 0)) fail("Q maps line");
    if (!perms(F1, "rw-s", PAGE) || !perms(F, "rw-s", 0)) fail("F maps lines");
    /* P's writes seen by C and G. */
    write_spots(v);
    if (cmd(to_c, from_c, 'c', v) != 'y') fail("C does not see P's writes");
    if (cmd(to_g, from_g, 'c', v) != 'y') fail("G does not see P's writes");
    if (cmd(to_c, from_c, 'm', v) != 'y') fail("C's own mapping of M does not see P's write");
    /* C's and G's writes seen by P and each other. */
    if (cmd(to_c, from_c, 'w', v + 1) != 'y' || !spots_are(v + 1)) fail("P does not see C's writes");
    if (cmd(to_g, from_g, 'c', v + 1) != 'y') fail("G does not see C's writes");
    if (cmd(to_g, from_g, 'w', v + 2) != 'y' || !spots_are(v + 2)) fail("P does not see G's writes");
    /* The named semaphore: P's post is C's to take, once. */
    if (sem_post(sem) || cmd(to_c, from_c, 's', 0) != 'y') fail("C cannot take the semaphore P posted");
    if (cmd(to_c, from_c, 's', 0) != 'n') fail("C took the semaphore twice");
    /* Descriptors and mappings: one file. */
    char b = v + 3, got = 0;
    if (pwrite(mfd, &b, 1, 3 * PAGE) != 1 || M[3 * PAGE] != b || M2[PAGE] != b) fail("write through M's fd not in its mappings");
    M[4 * PAGE + 1] = v + 4;
    if (pread(mfd, &got, 1, 4 * PAGE + 1) != 1 || got != v + 4) fail("write to M's mapping not read through its fd");
    if (pwrite(dfd, &b, 1, 2 * PAGE) != 1 || D[2 * PAGE] != b) fail("write through D's fd not in its mapping");
    D[PAGE + 9] = v + 5;
    if (pread(dfd, &got, 1, PAGE + 9) != 1 || got != v + 5) fail("write to D's mapping not read through its fd");
    /* Q's private page stays private. */
    char qf = 0;
    if (Q[5] == 0) fail("Q private page lost");
    (void)qf;
    say(bad[0] ? bad : "ok");
    say("\n");
}
static char *map(size_t len, int prot, int flags, int fd, off_t off) {
    char *p = mmap(NULL, len, prot, flags, fd, off);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    return p;
}
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0) return 2;
    A = map(16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    fill(A, PAGE, 1);
    fill(A + PAGE, PAGE, 2);
    fill(A + 5 * PAGE, 16, 3);
    int zfd = open("/dev/zero", O_RDWR);
    Z = map(4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, zfd, 0);
    close(zfd);
    fill(Z, 64, 4);
    mfd = memfd_create("shm-test", 0);
    if (mfd < 0 || ftruncate(mfd, 8 * PAGE)) return 2;
    char buf[64];
    fill(buf, 64, 5);
    if (pwrite(mfd, buf, 64, 0) != 64) return 2;
    fill(buf, 64, 6);
    if (pwrite(mfd, buf, 64, 2 * PAGE) != 64) return 2;
    M = map(8 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    M2 = map(2 * PAGE, PROT_READ, MAP_SHARED, mfd, 2 * PAGE);
    int nfd = memfd_create("mapped-only", 0);
    if (nfd < 0 || ftruncate(nfd, 3 * PAGE)) return 2;
    N = map(3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, nfd, 0);
    close(nfd);
    fill(N, 64, 7);
    int qfd = memfd_create("private", 0);
    if (qfd < 0 || ftruncate(qfd, 2 * PAGE)) return 2;
    fill(buf, 64, 8);
    if (pwrite(qfd, buf, 64, 0) != 64) return 2;
    fill(buf, 64, 10);
    if (pwrite(qfd, buf, 64, PAGE) != 64) return 2;
    Q = map(2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, qfd, 0);
    close(qfd);
    fill(Q, 64, 9); /* a private copy of page 0; page 1 stays the memfd's */
    char path[4096];
    snprintf(path, sizeof path, "%s.deleted", argv[1]);
    dfd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
    if (dfd < 0 || ftruncate(dfd, 3 * PAGE)) return 2;
    D = map(3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, dfd, 0);
    fill(D, 64, 11);
    if (unlink(path)) return 2;
    snprintf(path, sizeof path, "%s.data", argv[1]);
    int ffd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
    if (ffd < 0 || ftruncate(ffd, 4 * PAGE)) return 2;
    F = map(4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, ffd, 0);
    F1 = map(3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, ffd, PAGE);
    close(ffd);
    fill(F + PAGE, 64, 12);
    snprintf(sem_name, sizeof sem_name, "/pipecr-shmem-%d", (int)getpid());
    sem = sem_open(sem_name, O_CREAT | O_EXCL, 0600, 0);
    if (sem == SEM_FAILED) return 2;
    set_spots();
    if (pipe(to_c) || pipe(from_c) || pipe(to_g) || pipe(from_g)) return 2;
    pid_t c = fork();
    if (c < 0) return 2;
    if (c == 0) {
        /* C: a third mapping of M, at an address of its own. */
        MC = map(8 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
        pid_t g = fork();
        if (g < 0) _exit(2);
        if (g == 0) {
            MC = NULL;
            close(to_c[0]);
            close(from_c[1]);
            serve(to_g[0], from_g[1]);
        }
        close(to_g[0]);
        close(from_g[1]);
        serve(to_c[0], from_c[1]);
    }
    close(to_c[0]);
    close(from_c[1]);
    close(to_g[0]);
    close(from_g[1]);
    char ok = 0;
    /* Wait for C to be in place (its mapping made, G forked). */
    if (cmd(to_c, from_c, 'c', 0) == 0) return 2;
    if (cmd(to_g, from_g, 'c', 0) == 0) return 2;
    (void)ok;
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    say("ready\n");
    if (write(ack, "r", 1) != 1) return 2;
    for (;;) {
        char m;
        ssize_t n = read(ctl, &m, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n != 1) return 2;
        if (m == 'v') verify();
        if (m == 'q') {
            cmd(to_g, from_g, 'q', 0);
            cmd(to_c, from_c, 'q', 0);
            while (wait(NULL) > 0) {
            }
            sem_unlink(sem_name);
            return 0;
        }
        if (write(ack, "k", 1) != 1) return 2;
    }
}
