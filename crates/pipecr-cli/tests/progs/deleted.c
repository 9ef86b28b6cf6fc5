/* Files whose names were removed, through dump and restore: deleted OUT CTL ACK

   Setup, in DIR (the directory of OUT), each file then unlinked:
   - fd 10: DIR/sparse, read-write, 1 GiB long, holding data only in three pages (at 0,
     at 512 MiB + 4 KiB, and the last page), each filled with a pattern of its offset;
     position 12345;
   - fd 11: DIR/null, a node made with mknod of /dev/null's device (1:3), mode 0640,
     opened read-write;
   - fd 12: DIR/zero, a node of /dev/zero's device (1:5), mode 0604, opened read-only;
   - fd 13: DIR/fifo, a FIFO of mode 0620 opened read-write, holding "fifo bytes";
   - fd 14: a memfd, 1 GiB long, with data only in the page at 256 MiB.
   Prints "ready" and acks.

   'v': checks each from inside: the sparse file's size, its data and holes as SEEK_DATA
   and SEEK_HOLE find them, its bytes and position, and that it occupies little disk;
   each device node by fstat (type, device number, mode, no link left) and that it still
   works (writes vanish into the null device, the zero device reads zeros); the FIFO's
   type, mode and bytes. Prints "ok" or what failed, acks. 'q': exits. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define GIB (1024L * 1024 * 1024)
#define PAGE 4096L

static const off_t pages[3] = {0, GIB / 2 + PAGE, GIB - PAGE};
static int failed;

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char line[400];
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    dprintf(1, "FAIL: %s\n", line);
    failed = 1;
}

static void die(const char *what) {
    dprintf(1, "setup: %s: %s\n", what, strerror(errno));
    _exit(2);
}

static void pattern(char *buf, off_t at) {
    for (long i = 0; i < PAGE; i++)
        buf[i] = (char)((at / PAGE) * 13 + i * 7 + 1);
}

static void at_fd(int fd, int want, const char *what) {
    if (fd < 0)
        die(what);
    if (fd != want) {
        if (dup2(fd, want) < 0)
            die("dup2");
        close(fd);
    }
}

static void check_node(int fd, const char *name, unsigned maj, unsigned min, mode_t mode) {
    struct stat st;
    if (fstat(fd, &st)) {
        fail("fstat %s: %s", name, strerror(errno));
        return;
    }
    if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != maj || minor(st.st_rdev) != min)
        fail("%s: mode %o rdev %u:%u, want a character device %u:%u", name, st.st_mode,
             major(st.st_rdev), minor(st.st_rdev), maj, min);
    if ((st.st_mode & 07777) != mode)
        fail("%s: permissions %o, want %o", name, st.st_mode & 07777, mode);
    if (st.st_nlink != 0)
        fail("%s: %lu links, want none", name, (unsigned long)st.st_nlink);
}

static void verify(void) {
    /* The sparse file (its position first: SEEK_DATA moves it). */
    if (lseek(10, 0, SEEK_CUR) != 12345)
        fail("sparse: position %ld", (long)lseek(10, 0, SEEK_CUR));
    struct stat st;
    fstat(10, &st);
    if (st.st_size != GIB || st.st_nlink != 0)
        fail("sparse: size %ld links %lu", (long)st.st_size, (unsigned long)st.st_nlink);
    if (st.st_blocks * 512 > 1024 * 1024)
        fail("sparse: %ld bytes on disk, want its three pages", (long)st.st_blocks * 512);
    off_t want[][2] = {{pages[0], pages[0] + PAGE},
                       {pages[1], pages[1] + PAGE},
                       {pages[2], pages[2] + PAGE}};
    off_t from = 0;
    for (int i = 0; i < 3; i++) {
        off_t d = lseek(10, from, SEEK_DATA);
        off_t h = lseek(10, d, SEEK_HOLE);
        if (d != want[i][0] || h != want[i][1])
            fail("sparse: extent %d at %ld..%ld, want %ld..%ld", i, (long)d, (long)h,
                 (long)want[i][0], (long)want[i][1]);
        from = h;
        char buf[PAGE], expect[PAGE];
        pattern(expect, pages[i]);
        if (pread(10, buf, PAGE, pages[i]) != PAGE || memcmp(buf, expect, PAGE))
            fail("sparse: the page at %ld differs", (long)pages[i]);
    }
    if (lseek(10, from, SEEK_DATA) != -1 || errno != ENXIO)
        fail("sparse: data after the last page");
    char zeros[PAGE], buf[PAGE];
    memset(zeros, 0, sizeof zeros);
    if (pread(10, buf, PAGE, GIB / 4) != PAGE || memcmp(buf, zeros, PAGE))
        fail("sparse: a hole reads something else than zeros");

    /* The device nodes. */
    check_node(11, "null", 1, 3, 0640);
    check_node(12, "zero", 1, 5, 0604);
    if (write(11, "x", 1) != 1)
        fail("null: write: %s", strerror(errno));
    if (read(11, buf, 1) != 0)
        fail("null: read something");
    memset(buf, 1, 64);
    if (read(12, buf, 64) != 64 || memcmp(buf, zeros, 64))
        fail("zero: read no zeros");
    if ((fcntl(11, F_GETFL) & O_ACCMODE) != O_RDWR || (fcntl(12, F_GETFL) & O_ACCMODE) != O_RDONLY)
        fail("access modes %#x %#x", fcntl(11, F_GETFL), fcntl(12, F_GETFL));

    /* The memfd: as sparse as the file. */
    fstat(14, &st);
    if (st.st_size != GIB)
        fail("memfd: size %ld", (long)st.st_size);
    off_t d = lseek(14, 0, SEEK_DATA), h = lseek(14, d, SEEK_HOLE);
    if (d != GIB / 4 || h != GIB / 4 + PAGE || lseek(14, h, SEEK_DATA) != -1)
        fail("memfd: data at %ld..%ld, want only the page at %ld", (long)d, (long)h, GIB / 4);
    char expect[PAGE];
    pattern(expect, GIB / 4);
    if (pread(14, buf, PAGE, GIB / 4) != PAGE || memcmp(buf, expect, PAGE))
        fail("memfd: its page differs");

    /* The FIFO. */
    fstat(13, &st);
    if (!S_ISFIFO(st.st_mode) || (st.st_mode & 07777) != 0620 || st.st_nlink != 0)
        fail("fifo: mode %o links %lu", st.st_mode, (unsigned long)st.st_nlink);
    char got[32] = {0};
    fcntl(13, F_SETFL, O_NONBLOCK);
    if (read(13, got, sizeof got) != 10 || memcmp(got, "fifo bytes", 10))
        fail("fifo holds \"%s\"", got);
}

int main(int argc, char **argv) {
    if (argc < 4)
        return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0)
        return 2;
    close(out);
    char dirbuf[512], dir[512], path[600];
    snprintf(dirbuf, sizeof dirbuf, "%s", argv[1]);
    snprintf(dir, sizeof dir, "%s", dirname(dirbuf));
    umask(0);

    snprintf(path, sizeof path, "%s/sparse", dir);
    at_fd(open(path, O_RDWR | O_CREAT | O_TRUNC, 0600), 10, "open sparse");
    if (ftruncate(10, GIB))
        die("ftruncate");
    for (int i = 0; i < 3; i++) {
        char buf[PAGE];
        pattern(buf, pages[i]);
        if (pwrite(10, buf, PAGE, pages[i]) != PAGE)
            die("pwrite");
    }
    if (lseek(10, 12345, SEEK_SET) != 12345 || unlink(path))
        die("sparse");

    snprintf(path, sizeof path, "%s/null", dir);
    if (mknod(path, S_IFCHR | 0640, makedev(1, 3)))
        die("mknod null");
    at_fd(open(path, O_RDWR), 11, "open null");
    unlink(path);
    snprintf(path, sizeof path, "%s/zero", dir);
    if (mknod(path, S_IFCHR | 0604, makedev(1, 5)))
        die("mknod zero");
    at_fd(open(path, O_RDONLY), 12, "open zero");
    unlink(path);

    snprintf(path, sizeof path, "%s/fifo", dir);
    if (mkfifo(path, 0620))
        die("mkfifo");
    at_fd(open(path, O_RDWR), 13, "open fifo");
    if (write(13, "fifo bytes", 10) != 10)
        die("write fifo");
    unlink(path);

    at_fd(memfd_create("sparse", 0), 14, "memfd_create");
    if (ftruncate(14, GIB))
        die("ftruncate memfd");
    char page[PAGE];
    pattern(page, GIB / 4);
    if (pwrite(14, page, PAGE, GIB / 4) != PAGE)
        die("pwrite memfd");
    printf("ready\n");
    fflush(stdout);

    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0)
        return 2;
    if (write(ack, "r", 1) != 1)
        return 2;
    for (;;) {
        char c;
        ssize_t r = read(ctl, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r != 1 || c == 'q')
            break;
        failed = 0;
        if (c == 'v') {
            off_t pos = lseek(10, 0, SEEK_CUR);
            verify();
            lseek(10, pos, SEEK_SET);
        }
        printf("%s\n", failed ? "failed" : "ok");
        fflush(stdout);
        if (write(ack, "a", 1) != 1)
            return 2;
    }
    return 0;
}
