/*
 * roundtrip.c - checks libpipecr's C interface from C.
 *
 * Fills a byte-stream pipe and a packet-mode (O_DIRECT) pipe, checkpoints each with
 * pipecr_checkpoint_pipe, checks that the originals still hold their bytes, closes them,
 * restores each at fixed numbers {10, 11} and at numbers pipecr picks {-1, -1}, and checks
 * bytes, packet sizes, capacity and flags. Then checks the error paths.
 *
 * Usage: roundtrip [SCRATCH_DIR]   (a fresh directory for the images; default: mkdtemp)
 * Prints every difference found and exits 1 if there was any, 0 otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "pipecr.h"

static int failures;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("roundtrip: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    failures++;
}

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond))                                                                       \
            fail(__VA_ARGS__);                                                             \
    } while (0)

/* Byte i of the test data: a pattern whose period (251) is not a power of two, so a
 * shifted or repeated block shows. */
static unsigned char pattern(size_t i)
{
    return (unsigned char)((i * 7 + 3) % 251);
}

static void fill(unsigned char *buf, size_t len, size_t offset)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = pattern(offset + i);
}

static int pending(int fd)
{
    int n = -1;
    if (ioctl(fd, FIONREAD, &n) < 0)
        return -1;
    return n;
}

/* Status flags that matter for a pipe end. */
static int status_flags(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -1;
    return flags & (O_ACCMODE | O_NONBLOCK | O_DIRECT | O_APPEND);
}

enum { STREAM_LEN = 5000, STREAM_CAPACITY = 128 * 1024 };

static const size_t packet_sizes[] = {1, 100, 4096, 7, 3000, 512};
#define NPACKETS (sizeof packet_sizes / sizeof packet_sizes[0])

/* Checks a restored byte-stream pipe: ends (r, w), flags, capacity, then its bytes. */
static void check_stream(const char *what, int r, int w)
{
    CHECK(status_flags(r) == (O_RDONLY | O_NONBLOCK), "%s: read end fd %d flags %#x, want %#x",
          what, r, status_flags(r), O_RDONLY | O_NONBLOCK);
    CHECK(status_flags(w) == O_WRONLY, "%s: write end fd %d flags %#x, want %#x", what, w,
          status_flags(w), O_WRONLY);
    CHECK(fcntl(r, F_GETFD) == 0 && fcntl(w, F_GETFD) == 0,
          "%s: ends are close-on-exec (or not open)", what);
    CHECK(fcntl(w, F_GETPIPE_SZ) == STREAM_CAPACITY, "%s: capacity %d, want %d", what,
          fcntl(w, F_GETPIPE_SZ), STREAM_CAPACITY);
    CHECK(pending(r) == STREAM_LEN, "%s: %d bytes pending, want %d", what, pending(r),
          STREAM_LEN);

    static unsigned char got[STREAM_LEN + 1], want[STREAM_LEN];
    fill(want, STREAM_LEN, 0);
    size_t total = 0;
    for (;;) {
        ssize_t n = read(r, got + total, sizeof got - total);
        if (n <= 0)
            break; /* EAGAIN: the read end is non-blocking and the pipe is empty */
        total += (size_t)n;
    }
    CHECK(total == STREAM_LEN, "%s: read %zu bytes, want %d", what, total, STREAM_LEN);
    if (total == STREAM_LEN) {
        for (size_t i = 0; i < total; i++) {
            if (got[i] != want[i]) {
                fail("%s: byte %zu is %u, want %u", what, i, got[i], want[i]);
                break;
            }
        }
    }
}

/* Checks a restored packet-mode pipe: one read returns one packet. */
static void check_packets(const char *what, int r, int w)
{
    CHECK(status_flags(r) == O_RDONLY, "%s: read end fd %d flags %#x, want %#x", what, r,
          status_flags(r), O_RDONLY);
    CHECK(status_flags(w) == (O_WRONLY | O_DIRECT | O_NONBLOCK),
          "%s: write end fd %d flags %#x, want %#x", what, w, status_flags(w),
          O_WRONLY | O_DIRECT | O_NONBLOCK);
    size_t offset = 0;
    for (size_t k = 0; k < NPACKETS; k++) {
        unsigned char got[65536], want[4096];
        if (pending(r) <= 0) {
            fail("%s: pipe empty before packet %zu", what, k);
            return;
        }
        ssize_t n = read(r, got, sizeof got);
        if (n != (ssize_t)packet_sizes[k]) {
            fail("%s: packet %zu has %zd bytes, want %zu", what, k, n, packet_sizes[k]);
            return;
        }
        fill(want, packet_sizes[k], offset);
        CHECK(memcmp(got, want, packet_sizes[k]) == 0, "%s: packet %zu differs", what, k);
        offset += packet_sizes[k];
    }
    CHECK(pending(r) == 0, "%s: %d bytes left after the last packet", what, pending(r));
}

static void close_pair(int fd[2])
{
    close(fd[0]);
    close(fd[1]);
}

static void test_stream(const char *dir)
{
    char image[4096];
    snprintf(image, sizeof image, "%s/stream", dir);

    int p[2];
    if (pipe(p) < 0) {
        fail("pipe: %s", strerror(errno));
        return;
    }
    CHECK(fcntl(p[1], F_SETPIPE_SZ, STREAM_CAPACITY) == STREAM_CAPACITY, "F_SETPIPE_SZ: %s",
          strerror(errno));
    CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0, "F_SETFL: %s", strerror(errno));
    unsigned char data[STREAM_LEN];
    fill(data, sizeof data, 0);
    CHECK(write(p[1], data, sizeof data) == (ssize_t)sizeof data, "write: %s",
          strerror(errno));

    /* Through the read end: its O_NONBLOCK is saved. */
    if (pipecr_checkpoint_pipe(p[0], image) != 0) {
        fail("pipecr_checkpoint_pipe(stream): %s (errno %d)", pipecr_last_error(), errno);
        close_pair(p);
        return;
    }
    CHECK(pending(p[0]) == STREAM_LEN, "stream: original holds %d bytes after checkpoint, want %d",
          pending(p[0]), STREAM_LEN);
    close_pair(p);

    int at[2] = {10, 11};
    if (pipecr_restore_pipe(image, at) != 0) {
        fail("pipecr_restore_pipe(stream, {10, 11}): %s", pipecr_last_error());
    } else {
        CHECK(at[0] == 10 && at[1] == 11, "stream: fd[] changed to {%d, %d}", at[0], at[1]);
        check_stream("stream at {10, 11}", 10, 11);
        close_pair(at);
    }

    int any[2] = {-1, -1};
    if (pipecr_restore_pipe(image, any) != 0) {
        fail("pipecr_restore_pipe(stream, {-1, -1}): %s", pipecr_last_error());
    } else if (any[0] < 0 || any[1] < 0 || any[0] == any[1]) {
        fail("stream: restored at fds {%d, %d}", any[0], any[1]);
    } else {
        check_stream("stream at new fds", any[0], any[1]);
        close_pair(any);
    }

    /* One number chosen, one given. */
    int mixed[2] = {-1, 12};
    if (pipecr_restore_pipe(image, mixed) != 0) {
        fail("pipecr_restore_pipe(stream, {-1, 12}): %s", pipecr_last_error());
    } else if (mixed[0] < 0 || mixed[1] != 12) {
        fail("stream: restored at fds {%d, %d}, want {N, 12}", mixed[0], mixed[1]);
    } else {
        check_stream("stream at {N, 12}", mixed[0], mixed[1]);
        close_pair(mixed);
    }
}

static void test_packets(const char *dir)
{
    char image[4096];
    snprintf(image, sizeof image, "%s/packets", dir);

    int p[2];
    if (pipe2(p, O_DIRECT) < 0) {
        fail("pipe2(O_DIRECT): %s", strerror(errno));
        return;
    }
    CHECK(fcntl(p[1], F_SETFL, O_DIRECT | O_NONBLOCK) == 0, "F_SETFL: %s", strerror(errno));
    size_t offset = 0, total = 0;
    for (size_t k = 0; k < NPACKETS; k++) {
        unsigned char buf[4096];
        fill(buf, packet_sizes[k], offset);
        CHECK(write(p[1], buf, packet_sizes[k]) == (ssize_t)packet_sizes[k], "write packet: %s",
              strerror(errno));
        offset += packet_sizes[k];
    }
    total = offset;

    /* Through the write end alone: pipecr reads the pipe through /proc/self/fd. */
    if (pipecr_checkpoint_pipe(p[1], image) != 0) {
        fail("pipecr_checkpoint_pipe(packets): %s (errno %d)", pipecr_last_error(), errno);
        close_pair(p);
        return;
    }
    CHECK(pending(p[0]) == (int)total, "packets: original holds %d bytes after checkpoint, want %zu",
          pending(p[0]), total);
    close_pair(p);

    int at[2] = {10, 11};
    if (pipecr_restore_pipe(image, at) != 0) {
        fail("pipecr_restore_pipe(packets, {10, 11}): %s", pipecr_last_error());
    } else {
        check_packets("packets at {10, 11}", 10, 11);
        close_pair(at);
    }
    int any[2] = {-1, -1};
    if (pipecr_restore_pipe(image, any) != 0) {
        fail("pipecr_restore_pipe(packets, {-1, -1}): %s", pipecr_last_error());
    } else {
        check_packets("packets at new fds", any[0], any[1]);
        close_pair(any);
    }
}

/* A path that is not UTF-8 is still a path. */
static void test_binary_path(const char *dir)
{
    char image[4096];
    snprintf(image, sizeof image, "%s/bin-\xff\xfe", dir);
    int p[2];
    if (pipe(p) < 0) {
        fail("pipe: %s", strerror(errno));
        return;
    }
    CHECK(write(p[1], "xyz", 3) == 3, "write: %s", strerror(errno));
    CHECK(pipecr_checkpoint_pipe(p[1], image) == 0, "checkpoint to a non-UTF-8 path: %s",
          pipecr_last_error());
    close_pair(p);
    int fd[2] = {-1, -1};
    if (pipecr_restore_pipe(image, fd) != 0) {
        fail("restore from a non-UTF-8 path: %s", pipecr_last_error());
        return;
    }
    char got[8] = {0};
    CHECK(read(fd[0], got, sizeof got) == 3 && memcmp(got, "xyz", 3) == 0,
          "non-UTF-8 path: restored bytes differ");
    close_pair(fd);
}

static void test_errors(const char *dir)
{
    char path[4096], needle[64];

    /* A regular file is not a pipe: the message names the descriptor. */
    snprintf(path, sizeof path, "%s/regular", dir);
    int file = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    CHECK(file >= 0, "open %s: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/never", dir);
    errno = 0;
    int rc = pipecr_checkpoint_pipe(file, path);
    snprintf(needle, sizeof needle, "fd %d ", file);
    CHECK(rc == -1, "checkpoint of a regular file returned %d, want -1", rc);
    CHECK(errno == EINVAL, "checkpoint of a regular file: errno %d, want EINVAL", errno);
    CHECK(strstr(pipecr_last_error(), needle) != NULL,
          "checkpoint of a regular file: message \"%s\" does not name \"%s\"",
          pipecr_last_error(), needle);
    CHECK(access(path, F_OK) != 0, "a failed checkpoint left %s behind", path);
    close(file);

    /* A closed descriptor. */
    errno = 0;
    rc = pipecr_checkpoint_pipe(-1, path);
    CHECK(rc == -1 && errno == EBADF, "checkpoint of fd -1: rc %d errno %d, want -1 EBADF", rc,
          errno);

    /* An existing image is never overwritten. */
    int p[2];
    if (pipe(p) == 0) {
        snprintf(path, sizeof path, "%s/stream", dir);
        errno = 0;
        rc = pipecr_checkpoint_pipe(p[0], path);
        CHECK(rc == -1 && errno == EEXIST, "checkpoint over an image: rc %d errno %d, want -1 EEXIST",
              rc, errno);
        close_pair(p);
    }

    /* A missing image: the message names the path. */
    snprintf(path, sizeof path, "%s/no-such-image", dir);
    int fd[2] = {-1, -1};
    errno = 0;
    rc = pipecr_restore_pipe(path, fd);
    CHECK(rc == -1, "restore of a missing image returned %d, want -1", rc);
    CHECK(errno == ENOENT, "restore of a missing image: errno %d, want ENOENT", errno);
    CHECK(strstr(pipecr_last_error(), path) != NULL,
          "restore of a missing image: message \"%s\" does not name %s", pipecr_last_error(),
          path);
    CHECK(fd[0] == -1 && fd[1] == -1, "a failed restore changed fd[] to {%d, %d}", fd[0], fd[1]);

    /* Null pointers and equal numbers. */
    errno = 0;
    CHECK(pipecr_restore_pipe(NULL, fd) == -1 && errno == EINVAL, "restore(NULL, fd) did not fail with EINVAL");
    snprintf(path, sizeof path, "%s/stream", dir);
    errno = 0;
    CHECK(pipecr_restore_pipe(path, NULL) == -1 && errno == EINVAL, "restore(path, NULL) did not fail with EINVAL");
    CHECK(strstr(pipecr_last_error(), "null") != NULL, "restore(path, NULL): message \"%s\"",
          pipecr_last_error());
    int same[2] = {20, 20};
    errno = 0;
    CHECK(pipecr_restore_pipe(path, same) == -1 && errno == EINVAL,
          "restore at {20, 20} did not fail with EINVAL");
    CHECK(pipecr_checkpoint_pipe(0, NULL) == -1 && errno == EINVAL,
          "checkpoint(0, NULL) did not fail with EINVAL");

    /* A success leaves the last message alone. */
    const char *before = pipecr_last_error();
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", before);
    int ok[2] = {-1, -1};
    if (pipecr_restore_pipe(path, ok) == 0) {
        CHECK(strcmp(pipecr_last_error(), copy) == 0, "a successful call changed the message");
        close_pair(ok);
    } else {
        fail("restore of %s: %s", path, pipecr_last_error());
    }
}

int main(int argc, char **argv)
{
    char scratch[] = "/tmp/pipecr-capi-XXXXXX";
    const char *dir = argc > 1 ? argv[1] : mkdtemp(scratch);
    if (dir == NULL) {
        fprintf(stderr, "roundtrip: mkdtemp: %s\n", strerror(errno));
        return 2;
    }
    CHECK(strcmp(pipecr_last_error(), "") == 0, "message before any failure: \"%s\"",
          pipecr_last_error());

    test_stream(dir);
    test_packets(dir);
    test_binary_path(dir);
    test_errors(dir);

    if (failures) {
        fprintf(stderr, "roundtrip: %d check(s) failed (images in %s)\n", failures, dir);
        return 1;
    }
    printf("roundtrip: all checks passed\n");
    return 0;
}
