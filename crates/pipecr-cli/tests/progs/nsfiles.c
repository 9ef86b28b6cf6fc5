#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/nsfs.h>
/* argv: OUT CTL ACK. Holds namespace files: its own net, uts and pid_for_children
   namespaces, its child's (a process of the tree) ipc namespace, and the uts namespace of
   a process outside the tree whose PID is in the file OUTSIDE next to OUT (no process of
   the tree is in that one). Prints "inodes A B C D E" and acks. Per byte read from
   CTL: 'q' exits 0 (and ends the child); 'v' checks each descriptor names the same
   namespace (fstat inode, NS_GET_NSTYPE) and that setns into its own uts namespace
   works, prints "ok" or what differs, acks. */
static int out;
static void say(const char *line) {
    if (write(out, line, strlen(line)) < 0) _exit(2);
}
enum { NET, UTS, PIDC, KIDIPC, OUTUTS, N };
static const char *paths[N] = {"/proc/self/ns/net", "/proc/self/ns/uts",
                               "/proc/self/ns/pid_for_children", NULL, NULL};
static const int types[N] = {CLONE_NEWNET, CLONE_NEWUTS, CLONE_NEWPID, CLONE_NEWIPC, CLONE_NEWUTS};
static int fds[N];
static ino_t inodes[N];

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out < 0) return 2;
    int hold[2];
    if (pipe2(hold, O_CLOEXEC) != 0) return 2;
    pid_t kid = fork();
    if (kid == 0) {
        char c;
        while (read(hold[0], &c, 1) < 0 && errno == EINTR) {}
        _exit(0);
    }
    close(hold[0]);
    char kidipc[64];
    snprintf(kidipc, sizeof kidipc, "/proc/%d/ns/ipc", kid);
    paths[KIDIPC] = kidipc;
    char outside[4096], oututs[64];
    snprintf(outside, sizeof outside - 8, "%s", argv[1]);
    char *slash = strrchr(outside, '/');
    if (!slash) return 2;
    strcpy(slash, "/OUTSIDE");
    FILE *f = fopen(outside, "r");
    int outpid = 0;
    if (!f || fscanf(f, "%d", &outpid) != 1) return 2;
    fclose(f);
    snprintf(oututs, sizeof oututs, "/proc/%d/ns/uts", outpid);
    paths[OUTUTS] = oututs;
    for (int i = 0; i < N; i++) {
        fds[i] = open(paths[i], O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fds[i] < 0 || fstat(fds[i], &st) != 0) return 3;
        inodes[i] = st.st_ino;
    }
    char line[256];
    snprintf(line, sizeof line, "inodes %lu %lu %lu %lu %lu\n", (unsigned long)inodes[0],
             (unsigned long)inodes[1], (unsigned long)inodes[2], (unsigned long)inodes[3],
             (unsigned long)inodes[4]);
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
            char bad[256] = "";
            for (int i = 0; i < N && !bad[0]; i++) {
                struct stat st;
                if (fstat(fds[i], &st) != 0 || st.st_ino != inodes[i])
                    snprintf(bad, sizeof bad, "%s: inode %lu, was %lu", paths[i],
                             (unsigned long)st.st_ino, (unsigned long)inodes[i]);
                else if (ioctl(fds[i], NS_GET_NSTYPE) != types[i])
                    snprintf(bad, sizeof bad, "%s: type %d", paths[i], ioctl(fds[i], NS_GET_NSTYPE));
            }
            if (!bad[0] && setns(fds[UTS], CLONE_NEWUTS) != 0)
                snprintf(bad, sizeof bad, "setns uts: %s", strerror(errno));
            say(bad[0] ? bad : "ok");
            say("\n");
            if (write(ack, "a", 1) != 1) return 2;
        }
    }
}
