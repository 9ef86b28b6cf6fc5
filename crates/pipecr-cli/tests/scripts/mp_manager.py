# A multiprocessing Manager (a server process holding a dict, a list and a queue, reached
# over unix sockets) and a worker process updating them round by round, paced by its own
# sleep; the main process prints each round as the queue brings it, then checks
# everything the manager holds. argv: ROUNDS.
import multiprocessing as mp
import sys
import time


def worker(d, l, q, rounds):
    for r in range(1, rounds + 1):
        d[r] = r * r
        l.append(r)
        q.put(r)
        time.sleep(0.02)
    q.put(None)


if __name__ == "__main__":
    rounds = int(sys.argv[1])
    with mp.Manager() as m:
        d, l, q = m.dict(), m.list(), m.Queue()
        p = mp.Process(target=worker, args=(d, l, q, rounds))
        p.start()
        while (r := q.get()) is not None:
            print("tick", r, flush=True)
        p.join()
        ok = (
            dict(d) == {r: r * r for r in range(1, rounds + 1)}
            and list(l) == list(range(1, rounds + 1))
            and p.exitcode == 0
        )
        print("done", "ok" if ok else "bad", flush=True)
