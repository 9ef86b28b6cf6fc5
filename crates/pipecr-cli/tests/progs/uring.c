#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
/* argv: OUT CTL ACK MODE. Sets up an io_uring instance (raw io_uring_setup, no liburing)
   and maps its submission ring, then:
     MODE "fd": keeps the instance's descriptor;
     MODE "mapped": closes the descriptor (the ring stays mapped, the instance alive);
     MODE "sqpoll": with IORING_SETUP_SQPOLL (a kernel poller thread in the process);
     MODE "registered": registers the descriptor (IORING_REGISTER_RING_FDS), closes it
        and unmaps the ring: the thread reaches the instance through its registered
        ring alone (checked: io_uring_enter through it works).
   Prints "fd N ring ADDR" (hex) and writes an ack byte to ACK. Per byte read from CTL:
   'p' answers 'p' (it still runs); 'q' exits 0. */
int main(int argc, char **argv) {
    if (argc != 5) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    if (strcmp(argv[4], "sqpoll") == 0) {
        p.flags = IORING_SETUP_SQPOLL;
        p.sq_thread_idle = 100000;
    }
    int fd = syscall(SYS_io_uring_setup, 4, &p);
    if (fd < 0) return 3;
    void *ring = mmap(0, p.sq_off.array + p.sq_entries * 4, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    if (ring == MAP_FAILED) return 3;
    printf("fd %d ring %lx\n", fd, (unsigned long)ring);
    fflush(stdout);
    if (strcmp(argv[4], "mapped") == 0) close(fd);
    if (strcmp(argv[4], "registered") == 0) {
        struct io_uring_rsrc_update up = {.offset = -1U, .data = fd};
        if (syscall(SYS_io_uring_register, fd, IORING_REGISTER_RING_FDS, &up, 1) != 1) return 3;
        munmap(ring, p.sq_off.array + p.sq_entries * 4);
        close(fd);
        if (syscall(SYS_io_uring_enter, up.offset, 0, 0, IORING_ENTER_REGISTERED_RING, 0, 0))
            return 3;
        printf("registered %u\n", up.offset);
        fflush(stdout);
    }
    if (write(ack, "r", 1) != 1) return 4;
    for (;;) {
        char c;
        if (read(ctl, &c, 1) != 1) return 5;
        if (c == 'q') return 0;
        if (write(ack, &c, 1) != 1) return 6;
    }
}
