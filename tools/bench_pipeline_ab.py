#!/usr/bin/env python3
"""The pipeline bench (`crates/pipecr-cli/benches/pipeline.rs`, case `pipes`, scratch in
/dev/shm so that fsync costs nothing) for several bench binaries, each with and without
signal handlers (`PIPECR_PIPELINE_NO_HANDLERS`), interleaved A A+h B B+h A A+h ...;
prints the median of every rep of each variant.

    tools/bench_pipeline_ab.py ROUNDS LABEL=BENCH_BINARY ...

A bench binary is `target/release/deps/pipeline-*` as `cargo bench -p pipecr-cli --bench
pipeline --no-run` names it; copy it aside before changing the code to keep a baseline
(it runs the `pipecr` its build names for the stages and restore).
"""
import os
import re
import statistics
import subprocess
import sys

KEYS = ["running on: stopped", "running on: total", "dump stopped", "dump total", "restore"]
PAT = re.compile(
    r"running on: stopped ([\d.]+) ms total ([\d.]+) ms; "
    r"dump stopped ([\d.]+) ms total ([\d.]+) ms; restore ([\d.]+) ms"
)


def main():
    rounds = int(sys.argv[1])
    variants = [a.split("=", 1) for a in sys.argv[2:]]
    data = {}
    for _ in range(rounds):
        for label, binary in variants:
            for handlers in (False, True):
                env = dict(os.environ, PIPECR_PIPELINE_ONLY="pipes", PIPECR_BENCH_DIR="/dev/shm")
                if not handlers:
                    env["PIPECR_PIPELINE_NO_HANDLERS"] = "1"
                out = subprocess.run([binary], env=env, capture_output=True, text=True, check=True)
                name = label + ("+h" if handlers else "")
                for line in (out.stdout + out.stderr).splitlines():
                    m = PAT.search(line)
                    if m:
                        data.setdefault(name, []).append([float(x) for x in m.groups()])
    print(f"{'variant':8} " + " | ".join(KEYS) + "   (medians of all reps, ms)")
    for name, rows in data.items():
        med = [statistics.median(r[i] for r in rows) for i in range(len(KEYS))]
        print(f"{name:8} " + " | ".join(f"{m:7.1f}" for m in med) + f"   n={len(rows)}")


if __name__ == "__main__":
    main()
