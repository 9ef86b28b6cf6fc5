#!/usr/bin/env python3
"""Small-tree dump and restore, several variants interleaved A B C D A B C D so that load
from other work hits all alike.

    tools/bench_inject_ab.py ROUNDS LABEL=PIPECR[,ARG...] ...

e.g. `tools/bench_inject_ab.py 30 base=/tmp/pipecr-base base+h=/tmp/pipecr-base,--read-handlers
new=target/release/pipecr new+h=target/release/pipecr,--read-handlers`. Each variant is a
pipecr binary and extra `pipecr dump` arguments; an argument written `+ARG` is given as
ARG to both `pipecr dump` and `pipecr restore`, before the subcommand (`+-q`,
`+--log-file`, `+/tmp/x.log`: options of every subcommand, such as logging).

The tree: `sh -c 'trap ... USR1 TERM; sleep 1000 | sleep 1000 & wait'` (3 processes, the
shell catching two signals). Each round, for each variant: start the tree, `pipecr dump`
(default: the tree is killed after the commit), then `pipecr restore -D DIR` until its
`restored pid N` line, then kill the restored tree. Times are wall clock around each
command. Prints the median per variant and, against the first variant, the ratio of the
medians and the median of the per-round ratios. Run as root (restore needs
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


def one(pipecr, extra, workdir, n, mode):
    root = start_tree()
    img = os.path.join(workdir, f"img-{mode}-{n}")
    both = [a[1:] for a in extra if a.startswith("+")]
    extra = [a for a in extra if not a.startswith("+")]
    args = [pipecr] + both + ["dump", "-t", str(root), "-D", img] + extra
    t0 = time.perf_counter()
    out = subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True).stdout
    t1 = time.perf_counter()
    # "tree stopped for 5.1 ms; dump took 6.0 ms; ...": pipecr's own clock, without the
    # start of the pipecr process.
    stopped = float(out.split("tree stopped for ")[1].split(" ms")[0]) / 1e3
    reap_all()
    r = subprocess.Popen([pipecr] + both + ["restore", "-D", img], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = r.stdout.readline()
    t2 = time.perf_counter()
    assert line.decode().strip() == f"restored pid {root}", line
    for pid in descendants(root):
        os.kill(pid, signal.SIGKILL)
    r.wait()
    reap_all()
    subprocess.run(["rm", "-rf", img], check=True)
    return t1 - t0, t2 - t1, stopped


def main():
    rounds = int(sys.argv[1])
    variants = []
    for spec in sys.argv[2:]:
        label, rest = spec.split("=", 1)
        binary, *extra = rest.split(",")
        variants.append((label, binary, extra))
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    times = {label: ([], [], []) for label, _, _ in variants}
    with tempfile.TemporaryDirectory() as workdir:
        for n in range(rounds):
            for label, binary, extra in variants:
                for i, t in enumerate(one(binary, extra, workdir, n, label)):
                    times[label][i].append(t)
    ms = lambda v: statistics.median(v) * 1e3
    # Each round's variants ran back to back: the median of their ratios is the least
    # sensitive to load that drifts over the run.
    pair = lambda a, b: statistics.median(x / y for x, y in zip(a, b))
    (bd, br, bs) = times[variants[0][0]]
    print(f"{'variant':10} {'dump':>9} {'stopped':>9} {'restore':>9}   vs {variants[0][0]}: "
          "dump, stopped, restore (ratio of medians / median of paired ratios)")
    for label, (d, r, st) in times.items():
        print(f"{label:10} {ms(d):6.2f} ms {ms(st):6.2f} ms {ms(r):6.2f} ms   "
              f"{ms(d) / ms(bd):.3f} / {pair(d, bd):.3f}   "
              f"{ms(st) / ms(bs):.3f} / {pair(st, bs):.3f}   "
              f"{ms(r) / ms(br):.3f} / {pair(r, br):.3f}")
    print(f"(medians of {rounds} rounds)")


if __name__ == "__main__":
    main()
