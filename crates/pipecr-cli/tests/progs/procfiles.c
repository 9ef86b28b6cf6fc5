/* Holds files of /proc and /sys open at a position, as top does: fd 10 /proc/self/status
 * past its first line, fd 11 /proc/stat (O_NONBLOCK) past "cpu", fd 12 the sysfs file
 * SYSFILE past its first two bytes, and fd 13 the FIFO DIR/go read-write.
 *
 * Usage: procfiles DIR SYSFILE. Writes DIR/before with, for fds 10-12, "fd N link L pos P
 * flags F" and the bytes at the position of 10 and 12 (pread: the position stays), prints
 * "ready\n", blocks reading one byte of go, then writes DIR/after with the same lines,
 * "self yes" when fd 10 is the status of the process reading it (its Pid: line is
 * getpid()), and "read10 BYTES": what read(2) of fd 10 returns next. Exits 0. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void place(int fd, int at) {
    if (fd < 0) exit(2);
    if (fd == at) return;
    if (dup2(fd, at) != at) exit(2);
    close(fd);
}

static void report(FILE *out) {
    for (int fd = 10; fd <= 12; fd++) {
        char path[64], link[4096];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n < 0) exit(2);
        link[n] = 0;
        off_t pos = lseek(fd, 0, SEEK_CUR);
        fprintf(out, "fd %d link %s pos %lld flags %o\n", fd, link, (long long)pos,
                fcntl(fd, F_GETFL));
        if (fd != 11) {
            char next[64];
            ssize_t k = pread(fd, next, fd == 10 ? 6 : sizeof next - 1, pos);
            if (k < 0) exit(2);
            next[k] = 0;
            fprintf(out, "next %d %s\n", fd, next);
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    char path[4096], c;
    place(open("/proc/self/status", O_RDONLY), 10);
    do {
        if (read(10, &c, 1) != 1) return 2;
    } while (c != '\n');
    place(open("/proc/stat", O_RDONLY | O_NONBLOCK), 11);
    char cpu[3];
    if (read(11, cpu, 3) != 3) return 2;
    place(open(argv[2], O_RDONLY), 12);
    char two[2];
    if (read(12, two, 2) != 2) return 2;
    snprintf(path, sizeof path, "%s/go", argv[1]);
    place(open(path, O_RDWR), 13);

    snprintf(path, sizeof path, "%s/before", argv[1]);
    FILE *out = fopen(path, "w");
    if (!out) return 2;
    report(out);
    fclose(out);
    printf("ready\n");
    fflush(stdout);
    if (read(13, &c, 1) != 1) return 2;

    snprintf(path, sizeof path, "%s/after", argv[1]);
    out = fopen(path, "w");
    if (!out) return 2;
    report(out);
    static char status[16384];
    ssize_t n = pread(10, status, sizeof status - 1, 0);
    if (n < 0) return 2;
    status[n] = 0;
    char want[64];
    snprintf(want, sizeof want, "\nPid:\t%d\n", (int)getpid());
    fprintf(out, "self %s\n", strstr(status, want) ? "yes" : "no");
    char next[7] = {0};
    if (read(10, next, 6) != 6) return 2;
    fprintf(out, "read10 %s\n", next);
    fclose(out);
    return 0;
}
