#!/usr/bin/env python3
"""Dump and restore time of a process holding N established loopback TCP connections
(both ends in the process, bytes queued both ways), against the same process holding N
unix socketpairs with the same bytes queued: the baseline, measured in the same run.

Runs itself in a private network namespace (unshare -n, as root). Usage:

    python3 tools/bench_sockets.py [--pipecr target/release/pipecr] [--n 1000] [--runs 3]

Prints one line per kind and run, and the median per connection.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HOLDER_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
/* holder tcp|pair N READYFD: N connections (or socketpairs), 100 bytes queued in each
 * direction of each, then one byte on READYFD and pause(). */
int main(int argc, char **argv)
{
    int n = atoi(argv[2]), ready = atoi(argv[3]);
    struct rlimit rl = {4 * n + 64, 4 * n + 64};
    if (setrlimit(RLIMIT_NOFILE, &rl))
        return 6;
    char buf[100];
    memset(buf, 'x', sizeof buf);
    int l = -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (!strcmp(argv[1], "tcp")) {
        l = socket(AF_INET, SOCK_STREAM, 0);
        if (bind(l, (void *)&a, sizeof a) || listen(l, 128) || getsockname(l, (void *)&a, &al))
            return 2;
    }
    for (int i = 0; i < n; i++) {
        int p[2];
        if (l >= 0) {
            p[0] = socket(AF_INET, SOCK_STREAM, 0);
            if (connect(p[0], (void *)&a, al) || (p[1] = accept(l, NULL, NULL)) < 0)
                return 3;
        } else if (socketpair(AF_UNIX, SOCK_STREAM, 0, p))
            return 3;
        if (write(p[0], buf, sizeof buf) != sizeof buf || write(p[1], buf, sizeof buf) != sizeof buf)
            return 4;
    }
    if (write(ready, "r", 1) != 1)
        return 5;
    close(ready);
    for (;;)
        pause();
}
"""


def run_once(pipecr, exe, kind, n, work):
    r, w = os.pipe()
    proc = subprocess.Popen([exe, kind, str(n), str(w)], pass_fds=(w,),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    os.close(w)
    assert os.read(r, 1) == b"r", "the holder did not get ready"
    os.close(r)
    img = os.path.join(work, f"img-{kind}-{time.monotonic_ns()}")
    t0 = time.monotonic()
    subprocess.run([pipecr, "dump", "-t", str(proc.pid), "-D", img], check=True,
                   stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    dump = time.monotonic() - t0
    proc.wait()
    t0 = time.monotonic()
    restore = subprocess.Popen([pipecr, "restore", "-D", img], stdout=subprocess.PIPE,
                               stdin=subprocess.DEVNULL)
    line = restore.stdout.readline()
    rest = time.monotonic() - t0
    assert line.startswith(b"restored pid"), line
    os.kill(proc.pid, 9)
    restore.wait()
    subprocess.run(["rm", "-rf", img], check=True)
    return dump, rest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipecr", default="target/release/pipecr")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not args.in_netns:
        os.execvp("unshare", ["unshare", "-n", sys.executable, *sys.argv, "--in-netns"])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    pipecr = os.path.abspath(args.pipecr)
    with tempfile.TemporaryDirectory() as work:
        src = os.path.join(work, "holder.c")
        exe = os.path.join(work, "holder")
        with open(src, "w") as f:
            f.write(HOLDER_C)
        subprocess.run(["cc", "-O2", "-o", exe, src], check=True)
        results = {"pair": [], "tcp": []}
        for run in range(args.runs):
            for kind in ("pair", "tcp"):
                d, r = run_once(pipecr, exe, kind, args.n, work)
                results[kind].append((d, r))
                print(f"run {run} {kind:4}: dump {d*1000:8.1f} ms  restore {r*1000:8.1f} ms")
        for kind, rs in results.items():
            d = statistics.median(x[0] for x in rs)
            r = statistics.median(x[1] for x in rs)
            print(f"median {kind:4}: dump {d*1000:8.1f} ms ({d/args.n*1e6:7.1f} us per "
                  f"connection), restore {r*1000:8.1f} ms ({r/args.n*1e6:7.1f} us per connection)")


if __name__ == "__main__":
    main()
