/* Holds a userfaultfd and an io_uring instance (two kinds pipecr refuses), prints their
 * descriptor numbers as "USERFAULTFD IO_URING\n" (IO_URING is -1 when the
 * kernel refuses io_uring_setup, e.g. kernel.io_uring_disabled), then blocks reading
 * stdin until it is closed. */
#define _GNU_SOURCE
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <unistd.h>

int main(void) {
    /* Needs CAP_SYS_PTRACE (or vm.unprivileged_userfaultfd): the tests run as root. */
    int uffd = (int)syscall(__NR_userfaultfd, O_CLOEXEC);
    if (uffd < 0) return 1;
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    int ring = (int)syscall(__NR_io_uring_setup, 4, &params);
    printf("%d %d\n", uffd, ring < 0 ? -1 : ring);
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {}
    return 0;
}
