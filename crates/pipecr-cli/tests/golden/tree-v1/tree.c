/* The program of the golden tree image (tests/golden_tree.rs). Built static, so that
   restoring the image needs no library of the machine it was dumped on:

       cc -static -O1 -pthread -o tree tree.c

   Run as /tmp/pipecr-golden-tree-v1/tree with stdin and stderr on /dev/null and stdout on
   a pipe; it leads its own session. It sets up:
   - a pipe P1 holding 3000 bytes in flight, for its child C to read;
   - a shared anonymous page S (MAP_SHARED | MAP_ANONYMOUS) holding "parent";
   - a zombie child Z, exited with status 42, not reaped;
   - a child C blocked reading a pipe GO_C; a thread T blocked reading a pipe GO_T;
   once C has put /dev/null on its stdout, writes "ready\n" on its own and puts /dev/null
   there instead (nothing of the tree leads outside it), arms alarm(3) and waits
   in pause() for SIGALRM: the dump happens meanwhile. After SIGALRM (in the restored
   tree: the saved timer's remaining time) it writes "go" to GO_C and GO_T: C checks P1's
   bytes and that S says "parent", writes "child" into S and exits 0; T checks that it was
   woken by "go" and returns 0. The parent reaps Z (status 42), C (status 0), joins T,
   checks S says "child", and exits 0; each failed check exits with its own code (10-19)
   instead. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int p1[2], go_c[2], go_t[2], c_ready[2];
static char *S;
static volatile sig_atomic_t rang;

static void on_alarm(int sig) {
    (void)sig;
    rang = 1;
}

static unsigned char byte(int i) { return (unsigned char)(i * 31 + 7); }

static void *thread_main(void *arg) {
    (void)arg;
    char b[2];
    if (read(go_t[0], b, 2) != 2 || memcmp(b, "go", 2) != 0) return (void *)1;
    return (void *)0;
}

int main(void) {
    if (pipe(p1) || pipe(go_c) || pipe(go_t) || pipe(c_ready)) return 10;
    unsigned char data[3000];
    for (int i = 0; i < 3000; i++) data[i] = byte(i);
    if (write(p1[1], data, sizeof data) != sizeof data) return 10;
    S = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (S == MAP_FAILED) return 10;
    strcpy(S, "parent");
    pid_t z = fork();
    if (z < 0) return 10;
    if (z == 0) _exit(42);
    pid_t c = fork();
    if (c < 0) return 10;
    if (c == 0) {
        /* Our stdout leads outside the tree: /dev/null instead, then tell the parent. */
        int null = open("/dev/null", O_WRONLY);
        if (null < 0 || dup2(null, 1) != 1 || write(c_ready[1], "c", 1) != 1) _exit(5);
        close(null);
        char b[2];
        if (read(go_c[0], b, 2) != 2 || memcmp(b, "go", 2) != 0) _exit(1);
        unsigned char got[3000];
        size_t n = 0;
        while (n < sizeof got) {
            ssize_t k = read(p1[0], got + n, sizeof got - n);
            if (k <= 0) _exit(2);
            n += (size_t)k;
        }
        if (memcmp(got, data, sizeof got) != 0) _exit(3);
        if (strcmp(S, "parent") != 0) _exit(4);
        strcpy(S, "child");
        _exit(0);
    }
    char r;
    if (read(c_ready[0], &r, 1) != 1) return 10;
    close(c_ready[0]);
    close(c_ready[1]);
    pthread_t t;
    if (pthread_create(&t, NULL, thread_main, NULL)) return 10;
    /* Z has exited once waitid with WNOWAIT says so; it stays a zombie. */
    siginfo_t si;
    if (waitid(P_PID, (id_t)z, &si, WEXITED | WNOWAIT)) return 10;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    if (sigaction(SIGALRM, &sa, NULL)) return 10;
    if (write(1, "ready\n", 6) != 6) return 10;
    int null = open("/dev/null", O_WRONLY);
    if (null < 0 || dup2(null, 1) != 1) return 10;
    close(null);
    alarm(3);
    while (!rang) pause();
    if (write(go_c[1], "go", 2) != 2 || write(go_t[1], "go", 2) != 2) return 11;
    int status;
    if (waitpid(z, &status, 0) != z || !WIFEXITED(status) || WEXITSTATUS(status) != 42) return 12;
    if (waitpid(c, &status, 0) != c || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 13;
    void *ret;
    if (pthread_join(t, &ret) || ret != NULL) return 14;
    if (strcmp(S, "child") != 0) return 15;
    return 0;
}
