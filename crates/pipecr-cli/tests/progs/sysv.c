/* System V IPC through dump and restore: sysv OUT CTL ACK [undo]

   Setup (keys unique per run: derived from the pid):
   - segment A (key KA, 3 pages + 100 bytes, mode 0640): attached read-write by the
     parent, inherited by the child, and attached again read-only (SHM_RDONLY) by the
     child; "page0" written at offset 0, "page2" at 2 * 4096, page 1 left a hole;
   - segment C (key KC, 8192 bytes): "unattached" written, then detached: nothing
     attaches it;
   - segment D (IPC_PRIVATE, 4096 bytes): attached by the parent, then IPC_RMID (removed
     but attached), "gone" written;
   - semaphore set S (key KS, 3 semaphores): SETALL 5 0 42, then semop -1 on the first
     (with SEM_UNDO when argv[4] is "undo");
   - message queue M (key KM): messages of types 2, 1, 3 and 7 ("two", "one",
     "three", and 5000 bytes of 'x'), in that order.
   Prints "ids A C D S M" and acks.

   'v': checks that every id still names its object (the same key finds the same id),
   with its size, mode, attach count and removal mark; the contents of A (and its hole)
   and C; that a write by the parent through A is seen by the child through both its
   attachments and a write by the child is seen by the parent; that the child's second
   attachment is read-only; the semaphore values 4 0 42; the four messages in order with
   their types and texts. Prints "ok" or what differs, acks.
   Holds a shared flock lock on OUT throughout.
   'q': removes every object, tells the child to exit, exits. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096
#define SIZE_A (3 * PAGE + 100)

static int ida, idc, idd, ids, idm;
static key_t ka, kc, ks, km;
static char *pa, *pd;
static int down[2], up[2];
static char bad[512];

union semun {
    int val;
    struct semid_ds *buf;
    unsigned short *array;
};

struct msg {
    long mtype;
    char text[8192];
};

#define FAIL(...)                                                                     \
    do {                                                                              \
        if (!bad[0]) snprintf(bad, sizeof bad, __VA_ARGS__);                          \
    } while (0)

/* The child: attached to A twice (inherited read-write, and read-only); answers the
   parent's requests over a pipe. */
static void child(void) {
    char *ro = shmat(ida, NULL, SHM_RDONLY);
    if (ro == (void *)-1) _exit(3);
    char rw_addr[32];
    snprintf(rw_addr, sizeof rw_addr, "%lx-", (unsigned long)ro);
    if (write(up[1], "c", 1) != 1) _exit(3);
    for (;;) {
        char c;
        if (read(down[0], &c, 1) != 1) _exit(3);
        if (c == 'q') _exit(0);
        /* 'w': the parent wrote "from-parent" at offset 100: seen through both
           attachments? Then write "from-child" at offset 200. Answer '1' or '0'. */
        char ok = '1';
        if (strcmp(pa + 100, "from-parent") || strcmp(ro + 100, "from-parent")) ok = '0';
        /* The read-only attachment is mapped r--s. */
        FILE *maps = fopen("/proc/self/maps", "r");
        char line[512];
        int found = 0;
        while (maps && fgets(line, sizeof line, maps)) {
            if (!strncmp(line, rw_addr, strlen(rw_addr))) {
                char perms[8];
                sscanf(line, "%*s %7s", perms);
                if (strcmp(perms, "r--s")) ok = '0';
                found = 1;
            }
        }
        if (maps) fclose(maps);
        if (!found) ok = '0';
        strcpy(pa + 200, "from-child");
        if (write(up[1], &ok, 1) != 1) _exit(3);
    }
}

static void check_shm(int id, key_t key, size_t size, int mode, int nattch, int dest,
                      const char *name) {
    struct shmid_ds ds;
    if (shmctl(id, IPC_STAT, &ds) < 0) {
        FAIL("%s: shmctl(%d): %s", name, id, strerror(errno));
        return;
    }
    if (ds.shm_perm.__key != key) FAIL("%s: key %#x", name, ds.shm_perm.__key);
    if (ds.shm_segsz != size) FAIL("%s: size %zu", name, ds.shm_segsz);
    if ((ds.shm_perm.mode & 0777) != mode) FAIL("%s: mode %o", name, ds.shm_perm.mode);
    if ((int)ds.shm_nattch != nattch) FAIL("%s: nattch %lu", name, ds.shm_nattch);
    if (!!(ds.shm_perm.mode & SHM_DEST) != dest) FAIL("%s: SHM_DEST %d", name, !dest);
    if (key != IPC_PRIVATE && shmget(key, 0, 0) != id) FAIL("%s: the key finds another id", name);
}

static void verify(void) {
    bad[0] = 0;
    check_shm(ida, ka, SIZE_A, 0640, 3, 0, "A");
    check_shm(idc, kc, 8192, 0600, 0, 0, "C");
    check_shm(idd, IPC_PRIVATE, PAGE, 0600, 2, 1, "D");
    if (strcmp(pa, "page0") || strcmp(pa + 2 * PAGE, "page2")) FAIL("A: contents");
    for (int i = 0; i < PAGE; i++)
        if (pa[PAGE + i]) {
            FAIL("A: the hole holds %d at %d", pa[PAGE + i], i);
            break;
        }
    if (strcmp(pd, "gone")) FAIL("D: contents");
    char *pc = shmat(idc, NULL, SHM_RDONLY);
    if (pc == (void *)-1)
        FAIL("C: shmat: %s", strerror(errno));
    else {
        if (strcmp(pc, "unattached")) FAIL("C: contents");
        shmdt(pc);
    }
    strcpy(pa + 100, "from-parent");
    char c = 'w';
    if (write(down[1], &c, 1) != 1 || read(up[0], &c, 1) != 1) FAIL("child gone");
    if (c != '1') FAIL("the child does not see the parent's write, or its attachment is not r--s");
    if (strcmp(pa + 200, "from-child")) FAIL("the parent does not see the child's write");

    unsigned short v[3];
    union semun arg = {.array = v};
    if (semctl(ids, 0, GETALL, arg) < 0) FAIL("S: GETALL: %s", strerror(errno));
    else if (v[0] != 4 || v[1] != 0 || v[2] != 42) FAIL("S: values %d %d %d", v[0], v[1], v[2]);
    if (semget(ks, 0, 0) != ids) FAIL("S: the key finds another id");

    if (msgget(km, 0) != idm) FAIL("M: the key finds another id");
    struct msqid_ds mds;
    if (msgctl(idm, IPC_STAT, &mds) < 0 || mds.msg_qnum != 4) FAIL("M: %lu messages", mds.msg_qnum);
    static struct msg m;
    long types[4] = {2, 1, 3, 7};
    const char *texts[3] = {"two", "one", "three"};
    for (int i = 0; i < 4; i++) {
        ssize_t n = msgrcv(idm, &m, sizeof m.text, 0, IPC_NOWAIT);
        if (n < 0) {
            FAIL("M: message %d: %s", i, strerror(errno));
            break;
        }
        if (m.mtype != types[i]) FAIL("M: message %d has type %ld", i, m.mtype);
        if (i < 3 && (n != (ssize_t)strlen(texts[i]) || memcmp(m.text, texts[i], n)))
            FAIL("M: message %d text", i);
        if (i == 3) {
            if (n != 5000) FAIL("M: the long message has %zd bytes", n);
            for (int j = 0; j < n; j++)
                if (m.text[j] != 'x') {
                    FAIL("M: the long message byte %d", j);
                    break;
                }
        }
    }
    puts(bad[0] ? bad : "ok");
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    /* Held across the restore; the test takes a conflicting one to make a restore fail
       after the objects exist. */
    if (flock(1, LOCK_SH | LOCK_NB) < 0) return 2;
    int undo = argc > 4 && !strcmp(argv[4], "undo");
    key_t base = 0x5e000000 | ((getpid() & 0xfffff) << 4);
    ka = base + 1, kc = base + 2, ks = base + 3, km = base + 4;

    ida = shmget(ka, SIZE_A, IPC_CREAT | IPC_EXCL | 0640);
    idc = shmget(kc, 8192, IPC_CREAT | IPC_EXCL | 0600);
    idd = shmget(IPC_PRIVATE, PAGE, IPC_CREAT | 0600);
    ids = semget(ks, 3, IPC_CREAT | IPC_EXCL | 0600);
    idm = msgget(km, IPC_CREAT | IPC_EXCL | 0600);
    if (ida < 0 || idc < 0 || idd < 0 || ids < 0 || idm < 0) return 4;
    pa = shmat(ida, NULL, 0);
    pd = shmat(idd, NULL, 0);
    char *pc = shmat(idc, NULL, 0);
    if (pa == (void *)-1 || pd == (void *)-1 || pc == (void *)-1) return 4;
    strcpy(pa, "page0");
    strcpy(pa + 2 * PAGE, "page2");
    strcpy(pc, "unattached");
    shmdt(pc);
    strcpy(pd, "gone");
    shmctl(idd, IPC_RMID, NULL);

    unsigned short v[3] = {5, 0, 42};
    union semun arg = {.array = v};
    if (semctl(ids, 0, SETALL, arg) < 0) return 4;
    struct sembuf op = {.sem_num = 0, .sem_op = -1, .sem_flg = undo ? SEM_UNDO : 0};
    if (semop(ids, &op, 1) < 0) return 4;

    static struct msg m;
    long types[3] = {2, 1, 3};
    const char *texts[3] = {"two", "one", "three"};
    for (int i = 0; i < 3; i++) {
        m.mtype = types[i];
        memcpy(m.text, texts[i], strlen(texts[i]));
        if (msgsnd(idm, &m, strlen(texts[i]), 0) < 0) return 4;
    }
    m.mtype = 7;
    memset(m.text, 'x', 5000);
    if (msgsnd(idm, &m, 5000, 0) < 0) return 4;

    if (pipe(down) < 0 || pipe(up) < 0) return 2;
    pid_t kid = fork();
    if (kid < 0) return 2;
    if (kid == 0) child();
    char c;
    if (read(up[0], &c, 1) != 1) return 2;

    printf("ids %d %d %d %d %d\n", ida, idc, idd, ids, idm);
    fflush(stdout);
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    if (write(ack, "r", 1) != 1) return 2;
    for (;;) {
        ssize_t r = read(ctl, &c, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r != 1) return 2;
        if (c == 'v') verify();
        if (c == 'q') {
            shmctl(ida, IPC_RMID, NULL);
            shmctl(idc, IPC_RMID, NULL);
            semctl(ids, 0, IPC_RMID);
            msgctl(idm, IPC_RMID, NULL);
            if (write(down[1], "q", 1) != 1) return 2;
            waitpid(kid, NULL, 0);
            if (write(ack, "a", 1) != 1) return 2;
            return 0;
        }
        if (write(ack, "a", 1) != 1) return 2;
    }
}
