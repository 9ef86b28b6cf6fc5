"""Python multiprocessing at work, rounds of: a Pool(2) maps squares; two Processes bump
a Value and an Array under a Lock; the pool's workers add 1 to 2000 bytes of a
shared_memory.SharedMemory. Prints "tick ROUND COUNTER" per round, then checks every
result itself and prints "done ok" (or what is wrong). Used by tests/restore_shared_real.rs,
which dumps it mid-work and restores it."""
import multiprocessing as mp
import sys
import time
from multiprocessing import shared_memory


def square(x):
    return x * x


def bump(counter, arr, lock, n):
    for _ in range(n):
        with lock:
            counter.value += 1
            for i in range(len(arr)):
                arr[i] += 1


def shm_add(name, base, n):
    shm = shared_memory.SharedMemory(name=name)
    for i in range(base, base + n):
        shm.buf[i] = (shm.buf[i] + 1) % 256
    shm.close()
    return n


def main():
    rounds = int(sys.argv[1])
    seen = {}
    counter = mp.Value("i", 0)
    arr = mp.Array("i", 4)
    lock = mp.Lock()
    shm = shared_memory.SharedMemory(create=True, size=1 << 20)
    with mp.Pool(2) as pool:
        for r in range(1, rounds + 1):
            squares = pool.map(square, range(100))
            ps = [mp.Process(target=bump, args=(counter, arr, lock, 50)) for _ in range(2)]
            for p in ps:
                p.start()
            for p in ps:
                p.join()
            pool.starmap(shm_add, [(shm.name, 0, 1000), (shm.name, 1000, 1000)])
            seen[r] = sum(squares)
            print("tick", r, counter.value, flush=True)
            time.sleep(0.05)
    bad = []
    if counter.value != rounds * 100:
        bad.append("counter %d" % counter.value)
    if list(arr) != [rounds * 100] * 4:
        bad.append("array %r" % list(arr))
    if any(b != rounds % 256 for b in shm.buf[:2000]) or any(shm.buf[2000:]):
        bad.append("shared memory")
    if dict(seen) != {r: 328350 for r in range(1, rounds + 1)}:
        bad.append("manager dict %r" % dict(seen))
    shm.close()
    shm.unlink()
    print("done", "ok" if not bad else " ".join(bad), flush=True)


if __name__ == "__main__":
    main()
