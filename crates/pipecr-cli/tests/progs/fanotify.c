/* fanotify OUT CTL ACK DIR: a fanotify group with an inode mark, a mount mark and a
 * filesystem mark, self-checking, for tests/restore_fanotify.rs. DIR is the root of a
 * tmpfs mount of the test's own (so that no one else's activity makes events).
 *
 * Set up at start, then one ack byte on ACK:
 *   - DIR/watched and DIR/other, created before any mark;
 *   - a group: FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_UNLIMITED_MARKS, event flags
 *     O_RDONLY | O_LARGEFILE | O_CLOEXEC, at fd 7;
 *   - an inode mark on DIR/watched: FAN_MODIFY | FAN_CLOSE_WRITE, with an ignore mask
 *     FAN_OPEN (FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY);
 *   - a mount mark on DIR: FAN_OPEN;
 *   - a filesystem mark on DIR: FAN_CLOSE_NOWRITE.
 * Then it drops CAP_SYS_ADMIN (as a program that sets up and then gives up privileges
 * would), so that a restorer without it can give its credentials and still must refuse
 * the group. The fanotify lines of its fdinfo are kept in memory. OUT gets "ready".
 * Per byte read from CTL:
 *   'v'  check from inside: the fdinfo lines are the same (flags, event flags, every mark
 *        with its object, masks, ignore mask and mark flags), O_NONBLOCK is on, no event
 *        is queued; then writing DIR/watched reports FAN_MODIFY | FAN_CLOSE_WRITE (and
 *        no FAN_OPEN: the ignore mask) with a descriptor of DIR/watched, and reading
 *        DIR/other reports FAN_OPEN (mount mark) and FAN_CLOSE_NOWRITE (filesystem mark)
 *        with a descriptor of DIR/other; writes "ok" or what differs to OUT;
 *   'd'  read and drop every queued event;
 *   'q'  exit 0.
 * Each command is followed by one ack byte. Errors exit with a status above 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <linux/capability.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static FILE *out;
static int bad;
static char dir[PATH_MAX - 16], watched[PATH_MAX], other[PATH_MAX];

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
    fflush(out);
    bad = 1;
}

static void die(const char *what)
{
    fprintf(out, "fatal: %s: %s\n", what, strerror(errno));
    fflush(out);
    exit(2);
}

/* The "fanotify" lines of /proc/self/fdinfo/FD, into buf. */
static void fdinfo_lines(int fd, char *buf, size_t size)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    if (!f)
        die("fdinfo");
    buf[0] = 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "fanotify", 8) == 0)
            strncat(buf, line, size - strlen(buf) - 1);
    fclose(f);
}

/* Reads every queued event; ORs the masks of the events whose descriptor leads to
 * WATCHED and OTHER into *w and *o, counts the others. */
static int collect(int g, uint64_t *w, uint64_t *o)
{
    char buf[8192];
    int strangers = 0;
    for (;;) {
        ssize_t n = read(g, buf, sizeof buf);
        if (n < 0 && errno == EAGAIN)
            return strangers;
        if (n <= 0)
            die("read events");
        struct fanotify_event_metadata *m = (void *)buf;
        for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
            char link[64], path[PATH_MAX];
            ssize_t l = -1;
            if (m->fd >= 0) {
                snprintf(link, sizeof link, "/proc/self/fd/%d", m->fd);
                l = readlink(link, path, sizeof path - 1);
                close(m->fd);
            }
            if (l < 0) {
                strangers++;
                continue;
            }
            path[l] = 0;
            if (strcmp(path, watched) == 0)
                *w |= m->mask;
            else if (strcmp(path, other) == 0)
                *o |= m->mask;
            else
                strangers++;
        }
    }
}

static void ack(int fd)
{
    if (write(fd, "k", 1) != 1)
        die("ack");
}

int main(int argc, char **argv)
{
    if (argc != 5)
        return 2;
    out = fopen(argv[1], "w");
    int ctl = open(argv[2], O_RDONLY);
    int ack_fd = open(argv[3], O_WRONLY);
    if (!out || ctl < 0 || ack_fd < 0)
        return 2;
    snprintf(dir, sizeof dir, "%s", argv[4]);
    snprintf(watched, sizeof watched, "%s/watched", dir);
    snprintf(other, sizeof other, "%s/other", dir);
    for (int i = 0; i < 2; i++) {
        int f = open(i ? other : watched, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (f < 0 || write(f, "seed", 4) != 4)
            die("create the files");
        close(f);
    }

    int g = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_UNLIMITED_MARKS,
                          O_RDONLY | O_LARGEFILE | O_CLOEXEC);
    if (g < 0)
        die("fanotify_init");
    if (dup2(g, 7) != 7)
        die("dup2");
    close(g);
    g = 7;
    if (fanotify_mark(g, FAN_MARK_ADD, FAN_MODIFY | FAN_CLOSE_WRITE, AT_FDCWD, watched))
        die("inode mark");
    if (fanotify_mark(g, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY,
                      FAN_OPEN, AT_FDCWD, watched))
        die("inode ignore mask");
    if (fanotify_mark(g, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN, AT_FDCWD, dir))
        die("mount mark");
    if (fanotify_mark(g, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_CLOSE_NOWRITE, AT_FDCWD, dir))
        die("filesystem mark");
    if (prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0)
        die("PR_CAPBSET_DROP");
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct caps[2];
    if (syscall(SYS_capget, &hdr, caps) != 0)
        die("capget");
    caps[0].effective &= ~(1u << CAP_SYS_ADMIN);
    caps[0].permitted &= ~(1u << CAP_SYS_ADMIN);
    caps[0].inheritable &= ~(1u << CAP_SYS_ADMIN);
    if (syscall(SYS_capset, &hdr, caps) != 0)
        die("capset");
    static char before[8192], after[8192];
    fdinfo_lines(g, before, sizeof before);
    fprintf(out, "ready\n");
    fflush(out);
    ack(ack_fd);

    char c;
    for (;;) {
        ssize_t n = read(ctl, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n != 1)
            return 3;
        if (c == 'q')
            return 0;
        if (c == 'd') {
            uint64_t w = 0, o = 0;
            collect(g, &w, &o);
            ack(ack_fd);
            continue;
        }
        if (c != 'v')
            return 5;
        bad = 0;
        fdinfo_lines(g, after, sizeof after);
        if (strcmp(before, after) != 0)
            fail("fdinfo differs:\n--- before\n%s--- after\n%s", before, after);
        if (!(fcntl(g, F_GETFL) & O_NONBLOCK))
            fail("O_NONBLOCK lost");
        int queued = -1;
        if (ioctl(g, FIONREAD, &queued) != 0 || queued != 0)
            fail("%d bytes of events queued before any access", queued);
        uint64_t w = 0, o = 0;
        collect(g, &w, &o);

        int f = open(watched, O_WRONLY);
        if (f < 0 || write(f, "more", 4) != 4)
            die("write watched");
        close(f);
        w = o = 0;
        int strangers = collect(g, &w, &o);
        if (w != (FAN_MODIFY | FAN_CLOSE_WRITE))
            fail("events of watched: %#llx, want FAN_MODIFY|FAN_CLOSE_WRITE (%#x)",
                 (unsigned long long)w, FAN_MODIFY | FAN_CLOSE_WRITE);
        f = open(other, O_RDONLY);
        char b[8];
        if (f < 0 || read(f, b, sizeof b) != 4)
            die("read other");
        close(f);
        w = o = 0;
        strangers += collect(g, &w, &o);
        if (o != (FAN_OPEN | FAN_CLOSE_NOWRITE))
            fail("events of other: %#llx, want FAN_OPEN|FAN_CLOSE_NOWRITE (%#x)",
                 (unsigned long long)o, FAN_OPEN | FAN_CLOSE_NOWRITE);
        if (w != 0)
            fail("events of watched while reading other: %#llx", (unsigned long long)w);
        if (strangers)
            fail("%d events of other files", strangers);
        if (!bad)
            fprintf(out, "ok\n");
        fflush(out);
        ack(ack_fd);
    }
}
