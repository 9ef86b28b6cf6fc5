#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
/* argv: OUT CTL ACK; DIR is OUT's directory. Holds pidfds and O_PATH descriptors:
     kp   pidfd of a live child K (blocked reading a pipe), kpn the same with
          PIDFD_NONBLOCK;
     sp   pidfd of itself, tp of its own main thread (PIDFD_THREAD);
     wp   pidfd of its worker thread W (PIDFD_THREAD | PIDFD_NONBLOCK), blocked reading a
          pipe;
     zp   pidfd of a zombie child Z (exited 5, not reaped);
     rp   pidfd of a child R that exited 9 and was reaped; rs of one killed by SIGTERM
          and reaped;
     fa   O_PATH of DIR/file, fd O_PATH of DIR, fl O_PATH|O_NOFOLLOW of the link DIR/link
          (-> "file"), fg the same of DIR/gone (-> "nowhere"), removed after opening; fr
          O_PATH|O_DIRECTORY of the directory DIR/sub, removed after opening.
   Prints "pids K Z W" to OUT and acks. Per byte read from CTL: 'q' exits 0; 'v' checks
   everything from inside (flags, fdinfo, poll, PIDFD_GET_INFO, waitid through the
   pidfds, fstat and readlinkat of the O_PATH ones; then lets W end and waits for wp to
   poll readable), prints "ok" or what differs, acks. */
struct pidfd_info {
    uint64_t mask, cgroupid;
    uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int32_t exit_code;
};
#define PIDFD_GET_INFO _IOWR(0xFF, 11, struct pidfd_info)
#define PIDFD_INFO_EXIT (1UL << 3)
#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

static int out;
static void say(const char *line) {
    if (write(out, line, strlen(line)) < 0) _exit(2);
}
static int pidfd_open(pid_t pid, unsigned flags) { return syscall(SYS_pidfd_open, pid, flags); }

enum { KP, KPN, SP, TP, WP, ZP, RP, RS, FA, FD, FL, FG, FR, N };
static const char *names[N] = {"kp", "kpn", "sp", "tp", "wp", "zp", "rp", "rs", "fa", "fd", "fl", "fg", "fr"};
static int fds[N], flags[N];
static ino_t ino_file, ino_dir;
static pid_t kid, zombie;
static volatile pid_t worker_tid;
static pthread_t worker;
static int wpipe[2], wready[2];

/* W: says its TID, then waits for a byte (or the end) of wpipe. */
static void *work(void *arg) {
    (void)arg;
    worker_tid = (pid_t)syscall(SYS_gettid);
    if (write(wready[1], "w", 1) != 1) _exit(2);
    char c;
    while (read(wpipe[0], &c, 1) < 0 && errno == EINTR) {}
    return NULL;
}

static char bad[512];
#define FAIL(...) do { snprintf(bad, sizeof bad, __VA_ARGS__); return -1; } while (0)

static int fdinfo_pid(int fd) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    int f = open(path, O_RDONLY);
    if (f < 0) return -2;
    ssize_t n = read(f, buf, sizeof buf - 1);
    close(f);
    if (n <= 0) return -2;
    buf[n] = 0;
    char *p = strstr(buf, "\nPid:");
    return p ? atoi(p + 5) : -3;
}
static int readable(int fd) {
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}
static int exit_info(int fd) {
    struct pidfd_info info;
    memset(&info, 0, sizeof info);
    info.mask = PIDFD_INFO_EXIT;
    if (ioctl(fd, PIDFD_GET_INFO, &info) != 0) return -1;
    return (info.mask & PIDFD_INFO_EXIT) ? info.exit_code : -2;
}

static int check(void) {
    for (int i = 0; i < N; i++) {
        int f = fcntl(fds[i], F_GETFL);
        if (f != flags[i]) FAIL("%s flags %#o, were %#o", names[i], f, flags[i]);
        if (fcntl(fds[i], F_GETFD) != FD_CLOEXEC && i != FA) FAIL("%s lost close-on-exec", names[i]);
    }
    if (fdinfo_pid(fds[KP]) != kid) FAIL("kp names %d, not %d", fdinfo_pid(fds[KP]), kid);
    if (fdinfo_pid(fds[SP]) != getpid()) FAIL("sp names %d", fdinfo_pid(fds[SP]));
    if (fdinfo_pid(fds[TP]) != getpid()) FAIL("tp names %d", fdinfo_pid(fds[TP]));
    if (fdinfo_pid(fds[WP]) != worker_tid)
        FAIL("wp names %d, not %d", fdinfo_pid(fds[WP]), worker_tid);
    if (readable(fds[WP])) FAIL("the live thread's pidfd is readable");
    if (fdinfo_pid(fds[ZP]) != zombie) FAIL("zp names %d, not %d", fdinfo_pid(fds[ZP]), zombie);
    if (fdinfo_pid(fds[RP]) != -1 || fdinfo_pid(fds[RS]) != -1) FAIL("rp/rs name a live pid");
    if (readable(fds[KP]) || readable(fds[SP])) FAIL("a live process's pidfd is readable");
    if (!readable(fds[ZP]) || !readable(fds[RP]) || !readable(fds[RS]))
        FAIL("an exited process's pidfd is not readable");
    if (exit_info(fds[RP]) != (9 << 8)) FAIL("rp exit info %#x", exit_info(fds[RP]));
    if (exit_info(fds[RS]) != SIGTERM) FAIL("rs exit info %#x", exit_info(fds[RS]));
    /* Non-blocking: the live child has not exited, so waitid says EAGAIN at once. */
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PIDFD, fds[KPN], &si, WEXITED) != -1 || errno != EAGAIN)
        FAIL("waitid on kpn did not say EAGAIN (errno %d)", errno);
    memset(&si, 0, sizeof si);
    if (waitid(P_PIDFD, fds[ZP], &si, WEXITED) != 0 || si.si_pid != zombie ||
        si.si_code != CLD_EXITED || si.si_status != 5)
        FAIL("waitid on zp: pid %d code %d status %d", si.si_pid, si.si_code, si.si_status);
    if (syscall(SYS_pidfd_send_signal, fds[KP], SIGTERM, NULL, 0) != 0)
        FAIL("pidfd_send_signal: %s", strerror(errno));
    memset(&si, 0, sizeof si);
    if (waitid(P_PIDFD, fds[KP], &si, WEXITED) != 0 || si.si_pid != kid ||
        si.si_code != CLD_KILLED || si.si_status != SIGTERM)
        FAIL("waitid on kp: pid %d code %d status %d", si.si_pid, si.si_code, si.si_status);
    struct stat st;
    if (fstat(fds[FA], &st) != 0 || !S_ISREG(st.st_mode) || st.st_ino != ino_file)
        FAIL("fa is not the file");
    if (fstat(fds[FD], &st) != 0 || !S_ISDIR(st.st_mode) || st.st_ino != ino_dir)
        FAIL("fd is not the directory");
    char target[64];
    ssize_t n = readlinkat(fds[FL], "", target, sizeof target - 1);
    if (n < 0) FAIL("readlinkat fl: %s", strerror(errno));
    target[n] = 0;
    if (strcmp(target, "file") != 0) FAIL("fl points to %s", target);
    n = readlinkat(fds[FG], "", target, sizeof target - 1);
    if (n < 0) FAIL("readlinkat fg: %s", strerror(errno));
    target[n] = 0;
    if (strcmp(target, "nowhere") != 0) FAIL("fg points to %s", target);
    if (fstat(fds[FG], &st) != 0 || !S_ISLNK(st.st_mode) || st.st_nlink != 0)
        FAIL("fg is not a removed link (nlink %lu)", (unsigned long)st.st_nlink);
    if (fstat(fds[FR], &st) != 0 || !S_ISDIR(st.st_mode) || st.st_nlink != 0 ||
        (st.st_mode & 07777) != 0750)
        FAIL("fr is not a removed directory (mode %o nlink %lu)", st.st_mode,
             (unsigned long)st.st_nlink);
    /* W ends: its pidfd turns readable (waited for, not polled at once: the thread's
       exit is reported after pthread_join may return). */
    if (write(wpipe[1], "x", 1) != 1) FAIL("write wpipe: %s", strerror(errno));
    if (pthread_join(worker, NULL) != 0) FAIL("pthread_join");
    struct pollfd p = {fds[WP], POLLIN, 0};
    if (poll(&p, 1, -1) != 1 || !(p.revents & POLLIN)) FAIL("wp not readable after W ended");
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    char dir[2048];
    snprintf(dir, sizeof dir, "%s", argv[1]);
    char *slash = strrchr(dir, '/');
    if (!slash) return 2;
    *slash = 0;
    out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out < 0) return 2;
    int hold[2];
    if (pipe2(hold, O_CLOEXEC) != 0) return 2;
    kid = fork();
    if (kid < 0) return 2;
    if (kid == 0) {
        char c;
        while (read(hold[0], &c, 1) < 0 && errno == EINTR) {}
        _exit(0);
    }
    close(hold[0]);
    fds[KP] = pidfd_open(kid, 0);
    fds[KPN] = pidfd_open(kid, PIDFD_NONBLOCK);
    fds[SP] = pidfd_open(getpid(), 0);
    fds[TP] = pidfd_open(getpid(), PIDFD_THREAD);
    if (pipe2(wpipe, O_CLOEXEC) != 0 || pipe2(wready, O_CLOEXEC) != 0) return 2;
    if (pthread_create(&worker, NULL, work, NULL) != 0) return 2;
    char w;
    while (read(wready[0], &w, 1) < 0 && errno == EINTR) {}
    fds[WP] = pidfd_open(worker_tid, PIDFD_THREAD | PIDFD_NONBLOCK);
    zombie = fork();
    if (zombie == 0) _exit(5);
    fds[ZP] = pidfd_open(zombie, 0);
    siginfo_t si;
    while (waitid(P_PID, zombie, &si, WEXITED | WNOWAIT) < 0)
        if (errno != EINTR) return 2;
    pid_t r = fork();
    if (r == 0) _exit(9);
    fds[RP] = pidfd_open(r, 0);
    if (waitpid(r, NULL, 0) != r) return 2;
    r = fork();
    if (r == 0) {
        signal(SIGTERM, SIG_DFL);
        raise(SIGTERM);
        _exit(3);
    }
    fds[RS] = pidfd_open(r, 0);
    if (waitpid(r, NULL, 0) != r) return 2;
    char path[4096];
    snprintf(path, sizeof path, "%s/file", dir);
    fds[FA] = open(path, O_PATH); /* without O_CLOEXEC, on purpose */
    fds[FD] = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    snprintf(path, sizeof path, "%s/link", dir);
    fds[FL] = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    snprintf(path, sizeof path, "%s/gone", dir);
    fds[FG] = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (unlink(path) != 0) return 2;
    snprintf(path, sizeof path, "%s/sub", dir);
    if (mkdir(path, 0750) != 0 || chmod(path, 0750) != 0) return 2;
    fds[FR] = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rmdir(path) != 0) return 2;
    for (int i = 0; i < N; i++) {
        if (fds[i] < 0) {
            fprintf(stderr, "%s: %s\n", names[i], strerror(errno));
            return 2;
        }
        flags[i] = fcntl(fds[i], F_GETFL);
    }
    struct stat st;
    if (fstat(fds[FA], &st) != 0) return 2;
    ino_file = st.st_ino;
    if (fstat(fds[FD], &st) != 0) return 2;
    ino_dir = st.st_ino;
    char line[128];
    snprintf(line, sizeof line, "pids %d %d %d\n", kid, zombie, worker_tid);
    say(line);
    int ctl = open(argv[2], O_RDONLY | O_CLOEXEC);
    int ack = open(argv[3], O_WRONLY | O_CLOEXEC);
    if (ctl < 0 || ack < 0) return 2;
    if (write(ack, "r", 1) != 1) return 2;
    for (;;) {
        char ch;
        ssize_t n = read(ctl, &ch, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n != 1 || ch == 'q') return 0;
        if (ch == 'v') {
            if (check() == 0) say("ok\n");
            else {
                say(bad);
                say("\n");
            }
            if (write(ack, "a", 1) != 1) return 2;
        }
    }
}
