#include <fcntl.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
/* argv: OUT CTL ACK COUT CCTL CACK. Forks a child; each counts in memory, one step per
   byte 'n' read from its control FIFO (parent CTL, child CCTL), prints "parent N" /
   "child N" to its output file (OUT, COUT) and acknowledges on its ack FIFO (ACK, CACK).
   The child exits with its count on 'q'. The parent, on 'w', waits for the child with
   waitpid and prints "child exited S" (or "waitpid failed"); on 'q' it exits 0. */
static volatile unsigned long counter;
static int serve(const char *outp, const char *ctlp, const char *ackp, const char *who,
                 pid_t child) {
    int out = open(outp, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    int ctl = open(ctlp, O_RDONLY);
    int ack = open(ackp, O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    char c;
    for (;;) {
        if (read(ctl, &c, 1) != 1) return 3;
        if (c == 'q') return child ? 0 : (int)counter;
        if (c == 'w') {
            int st;
            if (waitpid(child, &st, 0) == child && WIFEXITED(st))
                printf("child exited %d\n", WEXITSTATUS(st));
            else
                printf("waitpid failed\n");
        } else {
            counter++;
            printf("%s %lu\n", who, counter);
        }
        fflush(stdout);
        if (write(ack, "a", 1) != 1) return 4;
    }
}
int main(int argc, char **argv) {
    if (argc != 7) return 2;
    pid_t child = fork();
    if (child < 0) return 2;
    if (child == 0) return serve(argv[4], argv[5], argv[6], "child", 0);
    return serve(argv[1], argv[2], argv[3], "parent", child);
}
