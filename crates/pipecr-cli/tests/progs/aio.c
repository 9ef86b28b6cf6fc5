#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
/* argv: OUT CTL ACK. Two AIO contexts (raw io_setup, no libaio); DATA is OUT.data, a
   file of 64 bytes "0123...":
     A: io_setup(8); nr - 2 reads submitted and reaped, so that its ring has gone
        round almost once, then 3 reads of DATA (data 111, 112, 113; offsets 0, 8, 16;
        8 bytes each) submitted and left unread: their events wrap around the ring's
        end (head nr - 2, tail 1);
     B: io_setup(4), never used (head = tail = 0).
   After setup it prints "ctx A B nr N" (hex ids, A's ring size) and writes an ack byte
   to ACK.
   Per byte read from CTL: 'q' exits 0; 'v' verifies from inside: io_getevents on A (no
   wait) returns exactly the 3 events from before, in order, each 8 bytes read, the
   buffers holding DATA's bytes; a new read submitted on A (offset 24) and one on B
   (offset 32) complete (io_getevents with a timeout) with their data and bytes;
   /proc/self/maps shows "/[aio]" at A and B; prints "ok" or what differs, then acks. */
static long io_setup(unsigned n, aio_context_t *c) { return syscall(SYS_io_setup, n, c); }
static long io_submit(aio_context_t c, long n, struct iocb **v) {
    return syscall(SYS_io_submit, c, n, v);
}
static long io_getevents(aio_context_t c, long min, long max, struct io_event *e,
                         struct timespec *t) {
    return syscall(SYS_io_getevents, c, min, max, e, t);
}
static int data_fd;
static char bufs[8][8];
static struct iocb cbs[8];
static int submit_read(aio_context_t c, int i, uint64_t data, long off) {
    memset(&cbs[i], 0, sizeof cbs[i]);
    memset(bufs[i], 0, sizeof bufs[i]);
    cbs[i].aio_data = data;
    cbs[i].aio_lio_opcode = IOCB_CMD_PREAD;
    cbs[i].aio_fildes = data_fd;
    cbs[i].aio_buf = (uint64_t)(uintptr_t)bufs[i];
    cbs[i].aio_nbytes = 8;
    cbs[i].aio_offset = off;
    struct iocb *p = &cbs[i];
    return io_submit(c, 1, &p) == 1 ? 0 : -1;
}
static const char *DATA = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!?";
static int mapped_aio(aio_context_t c) {
    char want[64], line[512];
    snprintf(want, sizeof want, "%llx-", (unsigned long long)c);
    FILE *f = fopen("/proc/self/maps", "r");
    int found = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, want, strlen(want)) == 0 && strstr(line, "/[aio]")) found = 1;
    if (f) fclose(f);
    return found;
}
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    char data_path[4096];
    snprintf(data_path, sizeof data_path, "%s.data", argv[1]);
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    data_fd = open(data_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (ctl < 0 || ack < 0 || data_fd < 0) return 2;
    if (write(data_fd, DATA, 64) != 64) return 2;
    aio_context_t a = 0, b = 0;
    if (io_setup(8, &a) || io_setup(4, &b)) return 3;
    unsigned nr = ((unsigned *)(uintptr_t)a)[1];
    struct io_event ev[8];
    for (unsigned i = 0; i < nr - 2; i++) {
        if (submit_read(a, 0, 1, 0)) return 4;
        if (io_getevents(a, 1, 1, ev, 0) != 1) return 4;
    }
    for (int i = 0; i < 3; i++)
        if (submit_read(a, i, 111 + i, 8 * i)) return 4;
    printf("ctx %llx %llx nr %u\n", (unsigned long long)a, (unsigned long long)b, nr);
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
        struct timespec none = {0, 0}, wait = {10, 0};
        long got = io_getevents(a, 0, 8, ev, &none);
        if (got != 3) DIFF(" A had %ld events waiting, not 3;", got);
        for (int i = 0; i < got && i < 3; i++) {
            if (ev[i].data != (uint64_t)(111 + i) || ev[i].res != 8 ||
                ev[i].obj != (uint64_t)(uintptr_t)&cbs[i])
                DIFF(" event %d: data %llu res %lld;", i, (unsigned long long)ev[i].data,
                     (long long)ev[i].res);
            if (memcmp(bufs[i], DATA + 8 * i, 8)) DIFF(" buffer %d;", i);
        }
        if (submit_read(a, 3, 222, 24)) DIFF(" io_submit on A failed;");
        got = io_getevents(a, 1, 1, ev, &wait);
        if (got != 1 || ev[0].data != 222 || ev[0].res != 8 || memcmp(bufs[3], DATA + 24, 8))
            DIFF(" the new read on A: %ld events, data %llu;", got,
                 (unsigned long long)ev[0].data);
        if (submit_read(b, 4, 333, 32)) DIFF(" io_submit on B failed;");
        got = io_getevents(b, 1, 1, ev, &wait);
        if (got != 1 || ev[0].data != 333 || ev[0].res != 8 || memcmp(bufs[4], DATA + 32, 8))
            DIFF(" the read on B: %ld events, data %llu;", got, (unsigned long long)ev[0].data);
        if (!mapped_aio(a) || !mapped_aio(b)) DIFF(" a ring is not mapped at its id;");
        if (n == 0)
            printf("ok\n");
        else
            printf("differs:%s\n", why);
        fflush(stdout);
        if (write(ack, "v", 1) != 1) return 6;
    }
}
