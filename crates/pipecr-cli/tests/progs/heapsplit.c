#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
/* argv: OUT CTL ACK. A heap in two areas, both [heap] in /proc/PID/maps: the parent grows
   its break, forks, and the child grows its own further (after a fork the new part does
   not merge with the old). The child prints "child PID heaps N" and acks; on 'v' it
   checks that its break is where it left it, grows it again, and that every byte it
   wrote is still there: "ok", or what differs. 'q': exit 0 (the parent exits with it). */
static int heaps(void) {
    FILE *m = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    while (m && fgets(line, sizeof line, m))
        if (strstr(line, "[heap]")) n++;
    if (m) fclose(m);
    return n;
}
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    const size_t first = 64 << 10, second = 256 << 10, third = 128 << 10;
    unsigned char *a = sbrk(first);
    if (a == (void *)-1) return 5;
    memset(a, 0xa1, first);
    pid_t child = fork();
    if (child < 0) return 6;
    if (child > 0) {
        int status;
        if (waitpid(child, &status, 0) != child) return 7;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 8;
    }
    unsigned char *b = sbrk(second);
    if (b == (void *)-1) return 5;
    memset(b, 0xb2, second);
    printf("child %d heaps %d\n", getpid(), heaps());
    fflush(stdout);
    /* After stdio's own allocations. */
    unsigned char *end = sbrk(0);
    if (write(ack, "a", 1) != 1) return 4;
    char c;
    for (;;) {
        if (read(ctl, &c, 1) != 1) return 3;
        if (c == 'q') return 0;
        unsigned char *now = sbrk(0);
        unsigned char *d = sbrk(third);
        int bad = 0;
        if (now != end) {
            printf("break at %p, left at %p\n", (void *)now, (void *)end);
            bad = 1;
        } else if (d == (void *)-1) {
            printf("sbrk after the restore failed\n");
            bad = 1;
        } else {
            memset(d, 0xc3, third);
            for (size_t i = 0; i < first && !bad; i++)
                if (a[i] != 0xa1) { printf("first area byte %zu\n", i); bad = 1; }
            for (size_t i = 0; i < second && !bad; i++)
                if (b[i] != 0xb2) { printf("second area byte %zu\n", i); bad = 1; }
            if (!bad && (unsigned char *)sbrk(0) != end + third) {
                printf("break not grown\n");
                bad = 1;
            }
            if (!bad) sbrk(-(intptr_t)third);
        }
        if (!bad) printf("ok\n");
        fflush(stdout);
        if (write(ack, "a", 1) != 1) return 4;
    }
}
