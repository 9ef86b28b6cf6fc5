/* Holds a timerfd and an io_uring instance (neither can be made with safe Rust here),
 * prints their descriptor numbers as "TIMERFD IO_URING\n" (IO_URING is -1 when the
 * kernel refuses io_uring_setup, e.g. kernel.io_uring_disabled), then blocks reading
 * stdin until it is closed. */
#define _GNU_SOURCE
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

int main(void) {
    int timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    if (timer < 0) return 1;
    struct itimerspec in_an_hour = {.it_value = {.tv_sec = 3600}};
    if (timerfd_settime(timer, 0, &in_an_hour, NULL) != 0) return 2;
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    int ring = (int)syscall(__NR_io_uring_setup, 4, &params);
    printf("%d %d\n", timer, ring < 0 ? -1 : ring);
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {}
    return 0;
}
