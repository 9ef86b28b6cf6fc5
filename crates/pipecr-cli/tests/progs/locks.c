/* File locks through dump and restore: locks OUT CTL ACK FILE1 FILE2

   Setup: an flock write lock on FILE1 (fd 3); on FILE2 through one open file (fd 4) an
   OFD read lock on bytes 0-99 and an OFD write lock on bytes 200-299; through another
   open file (fd 5) POSIX record locks: write on bytes 100-199, read from 300 to the end.
   A child opens FILE2 itself and blocks in fcntl(F_SETLKW) for a write lock on bytes
   100-199 (the parent's POSIX lock). Prints "pids PARENT CHILD" and acks.

   'u': releases the POSIX lock on 100-199 and waits for the child, which then gets its
   lock and exits 0; releases and takes again (without waiting) the flock and OFD locks.
   Prints "ok" or what failed, acks. 'q': exits. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

static int lock(int fd, int cmd, short type, off_t start, off_t len) {
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &fl);
}

int main(int argc, char **argv) {
    if (argc < 6) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    int f1 = open(argv[4], O_RDWR);
    int o2 = open(argv[5], O_RDWR);
    int p2 = open(argv[5], O_RDWR);
    if (f1 != 3 || o2 != 4 || p2 != 5) return 3;
    if (flock(f1, LOCK_EX | LOCK_NB) < 0) return 4;
    if (lock(o2, F_OFD_SETLK, F_RDLCK, 0, 100) < 0) return 4;
    if (lock(o2, F_OFD_SETLK, F_WRLCK, 200, 100) < 0) return 4;
    if (lock(p2, F_SETLK, F_WRLCK, 100, 100) < 0) return 4;
    if (lock(p2, F_SETLK, F_RDLCK, 300, 0) < 0) return 4;
    pid_t kid = fork();
    if (kid < 0) return 2;
    if (kid == 0) {
        int mine = open(argv[5], O_RDWR);
        if (mine < 0) _exit(5);
        for (;;) {
            if (lock(mine, F_SETLKW, F_WRLCK, 100, 100) == 0) _exit(0);
            if (errno != EINTR) _exit(6);
        }
    }
    printf("pids %d %d\n", getpid(), kid);
    fflush(stdout);
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    if (write(ack, "r", 1) != 1) return 2;
    for (;;) {
        char c;
        ssize_t r = read(ctl, &c, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r != 1) return 2;
        if (c == 'q') return 0;
        if (c == 'u') {
            const char *bad = NULL;
            int status = -1;
            if (lock(p2, F_SETLK, F_UNLCK, 100, 100) < 0) bad = "unlock POSIX";
            else if (waitpid(kid, &status, 0) != kid || status != 0) bad = "the child did not get its lock";
            else if (flock(f1, LOCK_UN) < 0 || flock(f1, LOCK_EX | LOCK_NB) < 0) bad = "flock again";
            else if (lock(o2, F_OFD_SETLK, F_UNLCK, 0, 300) < 0 ||
                     lock(o2, F_OFD_SETLK, F_WRLCK, 0, 100) < 0)
                bad = "OFD again";
            printf("%s\n", bad ? bad : "ok");
            fflush(stdout);
        }
        if (write(ack, "a", 1) != 1) return 2;
    }
}
