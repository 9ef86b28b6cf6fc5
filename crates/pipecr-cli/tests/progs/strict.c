#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
/* argv: OUT CTL ACK. Opens its files, enters strict seccomp mode (from then on only
   read, write, _exit and sigreturn), writes an ack byte to ACK. Per byte read from CTL:
   'p' answers 'p' on ACK (read and write still work); 'x' calls getpid, which strict
   mode answers with SIGKILL; 'q' exits 0 (the raw exit syscall: glibc's _exit would use
   exit_group, which strict mode does not allow). */
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT)) return 3;
    if (write(ack, "r", 1) != 1) syscall(SYS_exit, 4);
    for (;;) {
        char c;
        if (read(ctl, &c, 1) != 1) syscall(SYS_exit, 5);
        if (c == 'q') syscall(SYS_exit, 0);
        if (c == 'x') syscall(SYS_getpid);
        if (write(ack, &c, 1) != 1) syscall(SYS_exit, 6);
    }
}
