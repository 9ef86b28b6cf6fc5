#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>
/* argv: OUT CTL ACK. Opens its files, sets no_new_privs and a seccomp filter that kills
   the process on getitimer (everything else allowed), writes an ack byte to ACK. Per
   byte read from CTL: 'p' answers 'p' on ACK; 'x' calls getitimer, which the filter
   answers by killing the process (SIGSYS); 'q' exits 0. */
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getitimer, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog p = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return 3;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p)) return 3;
    if (write(ack, "r", 1) != 1) return 4;
    for (;;) {
        char c;
        if (read(ctl, &c, 1) != 1) return 5;
        if (c == 'q') return 0;
        if (c == 'x') {
            struct itimerval v;
            getitimer(ITIMER_REAL, &v);
        }
        if (write(ack, &c, 1) != 1) return 6;
    }
}
