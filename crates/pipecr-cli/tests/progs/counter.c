#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
/* argv: OUT CTL ACK. Counts in memory; one step per byte read from CTL ('q': exit 0),
   prints the count to stdout (OUT), then writes an ack byte to ACK. */
static volatile unsigned long counter;
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    char c;
    for (;;) {
        if (read(ctl, &c, 1) != 1) return 3;
        if (c == 'q') return 0;
        counter++;
        printf("%lu\n", counter);
        fflush(stdout);
        if (write(ack, "a", 1) != 1) return 4;
    }
}
