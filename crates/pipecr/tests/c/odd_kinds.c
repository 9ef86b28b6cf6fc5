/* Holds a perf_event fd (a disabled software dummy event of itself) and an io_uring
 * instance (two kinds pipecr refuses), prints their descriptor numbers as
 * "PERF_EVENT IO_URING\n" (IO_URING is -1 when the
 * kernel refuses io_uring_setup, e.g. kernel.io_uring_disabled), then blocks reading
 * stdin until it is closed. */
#define _GNU_SOURCE
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <unistd.h>

int main(void) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.size = sizeof attr;
    attr.config = PERF_COUNT_SW_DUMMY;
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    int event = (int)syscall(__NR_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (event < 0) return 1;
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    int ring = (int)syscall(__NR_io_uring_setup, 4, &params);
    printf("%d %d\n", event, ring < 0 ? -1 : ring);
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {}
    return 0;
}
