#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
/* argv: OUT CTL ACK. Sets its personality to ADDR_NO_RANDOMIZE | UNAME26 and, when
   started as root, becomes someone else: groups 1001 1002, gids 1000/1001/1002, uids
   1000/1003/1004, keeping only CAP_NET_BIND_SERVICE (permitted, effective and
   inheritable). Then it records what it is. Per byte read from CTL it compares what it
   is now with the record and prints "same" or "differs:" and each difference to OUT, then
   writes an ack byte to ACK; 'q' exits 0 when nothing differs, 1 otherwise. */
struct identity {
    unsigned persona;
    uid_t uid[4];
    gid_t gid[4];
    int ngroups;
    gid_t groups[64];
    struct __user_cap_data_struct caps[2];
    int dumpable;
};

static int take(struct identity *id) {
    memset(id, 0, sizeof *id);
    id->persona = (unsigned)personality(0xffffffff);
    if (getresuid(&id->uid[0], &id->uid[1], &id->uid[2])) return -1;
    if (getresgid(&id->gid[0], &id->gid[1], &id->gid[2])) return -1;
    id->uid[3] = (uid_t)setfsuid(-1);
    id->gid[3] = (gid_t)setfsgid(-1);
    id->ngroups = getgroups(64, id->groups);
    if (id->ngroups < 0) return -1;
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    if (syscall(SYS_capget, &h, id->caps)) return -1;
    id->dumpable = prctl(PR_GET_DUMPABLE);
    return 0;
}

static int compare(const struct identity *a, const struct identity *b) {
    int same = 1;
    if (a->persona != b->persona) {
        printf(" personality %#x!=%#x", a->persona, b->persona);
        same = 0;
    }
    for (int i = 0; i < 4; i++) {
        if (a->uid[i] != b->uid[i]) {
            printf(" uid[%d] %u!=%u", i, a->uid[i], b->uid[i]);
            same = 0;
        }
        if (a->gid[i] != b->gid[i]) {
            printf(" gid[%d] %u!=%u", i, a->gid[i], b->gid[i]);
            same = 0;
        }
    }
    if (a->ngroups != b->ngroups ||
        memcmp(a->groups, b->groups, sizeof(gid_t) * (size_t)a->ngroups)) {
        printf(" groups(%d!=%d)", a->ngroups, b->ngroups);
        same = 0;
    }
    if (memcmp(a->caps, b->caps, sizeof a->caps)) {
        printf(" caps %#x/%#x/%#x!=%#x/%#x/%#x", a->caps[0].effective, a->caps[0].permitted,
               a->caps[0].inheritable, b->caps[0].effective, b->caps[0].permitted,
               b->caps[0].inheritable);
        same = 0;
    }
    if (a->dumpable != b->dumpable) {
        printf(" dumpable %d!=%d", a->dumpable, b->dumpable);
        same = 0;
    }
    return same;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int out = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0 || dup2(out, 1) < 0) return 2;
    close(out);
    /* Opened before the ids change: the files are root's. */
    int ctl = open(argv[2], O_RDONLY);
    int ack = open(argv[3], O_WRONLY);
    if (ctl < 0 || ack < 0) return 2;
    if (personality(ADDR_NO_RANDOMIZE | UNAME26) < 0) return 2;
    if (geteuid() == 0) {
        gid_t groups[] = {1001, 1002};
        if (setgroups(2, groups)) return 5;
        if (setresgid(1000, 1001, 1002)) return 5;
        if (prctl(PR_SET_KEEPCAPS, 1)) return 5;
        if (setresuid(1000, 1003, 1004)) return 5;
        struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct d[2] = {{0}};
        d[0].effective = d[0].permitted = d[0].inheritable = 1u << CAP_NET_BIND_SERVICE;
        if (syscall(SYS_capset, &h, d)) return 5;
        if (prctl(PR_SET_KEEPCAPS, 0)) return 5;
    }
    struct identity before, now;
    if (take(&before)) return 2;
    int all_same = 1;
    char c;
    for (;;) {
        ssize_t n = read(ctl, &c, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n != 1) return 3;
        if (c == 'q') return all_same ? 0 : 1;
        if (take(&now)) return 4;
        printf("uid=%u,%u,%u,%u gid=%u,%u,%u,%u persona=%#x", now.uid[0], now.uid[1],
               now.uid[2], now.uid[3], now.gid[0], now.gid[1], now.gid[2], now.gid[3],
               now.persona);
        printf(" groups=");
        for (int i = 0; i < now.ngroups; i++) printf("%s%u", i ? "," : "", now.groups[i]);
        printf(" caps=%#x:", now.caps[0].effective);
        int same = compare(&before, &now);
        printf(same ? " same\n" : " differs\n");
        all_same &= same;
        fflush(stdout);
        if (write(ack, "a", 1) != 1) return 4;
    }
}
