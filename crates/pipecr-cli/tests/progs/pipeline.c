#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
/* argv: SHARED CTL ACK. Opens SHARED (truncated) and writes "P\n" to it, makes a pipe and
   forks. The child writes LINES numbered 16-byte lines ("%015d\n") into the pipe, then
   "C\n" to SHARED at the offset it shares with the parent, closes the pipe and exits.
   The parent reads one command byte at a time from CTL:
   'f': reads 256 lines (checking their numbers), then waits until the child blocks in a
        write to the full pipe (its wchan) and acknowledges with 'a' on ACK;
   'r': reads every line to end of file, checking that each is the next number, then
        reaps the child and writes "next N bad B pos P status S\n" to ACK (N: the next
        number expected, B: lines out of order, P: its own offset in SHARED, S: the child's
        exit status) and exits 0. */
#define LINES 20000
static int read_line(int fd, char *buf) {
    int got = 0;
    while (got < 16) {
        ssize_t n = read(fd, buf + got, 16 - got);
        if (n <= 0) return got == 0 ? 0 : -1;
        got += n;
    }
    return 1;
}
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int shared = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (shared < 0 || write(shared, "P\n", 2) != 2) return 2;
    int p[2];
    if (pipe(p) < 0) return 2;
    pid_t child = fork();
    if (child < 0) return 2;
    if (child == 0) {
        close(p[0]);
        char line[17];
        for (int i = 0; i < LINES; i++) {
            snprintf(line, sizeof line, "%015d\n", i);
            if (write(p[1], line, 16) != 16) _exit(3);
        }
        if (write(shared, "C\n", 2) != 2) _exit(4);
        close(p[1]);
        _exit(7);
    }
    close(p[1]);
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    long next = 0, bad = 0;
    char c, line[17];
    line[16] = 0;
    for (;;) {
        if (read(ctl, &c, 1) != 1) return 3;
        if (c == 'f') {
            for (int i = 0; i < 256; i++) {
                if (read_line(p[0], line) != 1) return 5;
                if (strtol(line, NULL, 10) != next) bad++;
                next++;
            }
            char path[64], wchan[64];
            snprintf(path, sizeof path, "/proc/%d/wchan", (int)child);
            for (;;) {
                int fd = open(path, O_RDONLY);
                ssize_t n = fd < 0 ? -1 : read(fd, wchan, sizeof wchan - 1);
                if (fd >= 0) close(fd);
                if (n < 0) return 6;
                wchan[n] = 0;
                if (strstr(wchan, "pipe_write")) break;
                sched_yield();
            }
            if (write(ack, "a", 1) != 1) return 4;
        } else if (c == 'r') {
            int r;
            while ((r = read_line(p[0], line)) == 1) {
                if (strtol(line, NULL, 10) != next) bad++;
                next++;
            }
            if (r < 0) bad++;
            int st = 0;
            if (waitpid(child, &st, 0) != child) st = -1;
            long pos = (long)lseek(shared, 0, SEEK_CUR);
            dprintf(ack, "next %ld bad %ld pos %ld status %d\n", next, bad, pos,
                    WIFEXITED(st) ? WEXITSTATUS(st) : -1);
            return 0;
        }
    }
}
