#!/usr/bin/env python3
"""Small-tree dump and restore: the default (handlers read by injection) against
`--no-inject`, interleaved A B A B so that load from other work hits both alike.

    tools/bench_inject.py PIPECR [ROUNDS]

The tree: `sh -c 'trap ... USR1 TERM; sleep 1000 | sleep 1000 & wait'` (3 processes, the
shell catching two signals). Each round, for each mode: start the tree, `pipecr dump`
(default: the tree is killed after the commit), then `pipecr restore -D DIR` until its
`restored pid N` line, then kill the restored tree. Times are wall clock around each
command. Prints the median per mode, their ratio, and the median of the per-round
ratios. Run as root (restore needs
CAP_CHECKPOINT_RESTORE).
"""

import ctypes
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PR_SET_CHILD_SUBREAPER = 36
SCRIPT = "trap 'echo usr1' USR1; trap 'exit 0' TERM; sleep 1000 | sleep 1000 & wait"


def children(pid):
    kids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            kids += [int(k) for k in f.read().split()]
    return kids


def descendants(root):
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            todo += children(pid)
        except FileNotFoundError:
            pass
    return out


def reap_all():
    while True:
        try:
            pid, _ = os.waitpid(-1, 0)
        except ChildProcessError:
            return


def start_tree():
    p = subprocess.Popen(["sh", "-c", SCRIPT], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Ready when both sleeps exist and sleep (their exec done).
    while True:
        pids = descendants(p.pid)
        if len(pids) == 3 and all(comm(x) == "sleep" for x in pids[1:]):
            return p.pid
        os.sched_yield()


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def one(pipecr, workdir, n, mode):
    root = start_tree()
    img = os.path.join(workdir, f"img-{mode}-{n}")
    args = [pipecr, "dump", "-t", str(root), "-D", img]
    if mode == "no-inject":
        args.append("--no-inject")
    t0 = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    t1 = time.perf_counter()
    reap_all()
    r = subprocess.Popen([pipecr, "restore", "-D", img], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = r.stdout.readline()
    t2 = time.perf_counter()
    assert line.decode().strip() == f"restored pid {root}", line
    for pid in descendants(root):
        os.kill(pid, signal.SIGKILL)
    r.wait()
    reap_all()
    subprocess.run(["rm", "-rf", img], check=True)
    return t1 - t0, t2 - t1


def main():
    pipecr = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    times = {"default": ([], []), "no-inject": ([], [])}
    with tempfile.TemporaryDirectory() as workdir:
        for n in range(rounds):
            for mode in ("default", "no-inject"):
                d, r = one(pipecr, workdir, n, mode)
                times[mode][0].append(d)
                times[mode][1].append(r)
    ms = lambda v: statistics.median(v) * 1e3
    for mode, (d, r) in times.items():
        print(f"{mode:10} dump {ms(d):6.1f} ms  restore {ms(r):6.1f} ms  (medians of {rounds})")
    (dd, dr), (nd, nr) = times["default"], times["no-inject"]
    print(f"default / no-inject: dump {ms(dd) / ms(nd):.3f}  restore {ms(dr) / ms(nr):.3f}")
    # Each round's A/B pair ran back to back: the median of their ratios is the least
    # sensitive to load that drifts over the run.
    pair = lambda a, b: statistics.median(x / y for x, y in zip(a, b))
    print(f"median of paired ratios: dump {pair(dd, nd):.3f}  restore {pair(dr, nr):.3f}")


if __name__ == "__main__":
    main()
