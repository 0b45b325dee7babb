# The profiler's Python test program. It waits for a line on stdin (the
# profiler follows it by then), does a fixed amount of work in the case
# named by argv[1], prints "done" and waits for stdin to close.
import asyncio
import sys
import threading


def unit():
    x = 0
    for i in range(3000):
        x += i
    return x


def slow_function():
    for _ in range(7):
        unit()


def fast_function():
    for _ in range(3):
        unit()


def round_trip():
    slow_function()
    fast_function()


def split(rounds):
    # 70 % of round_trip's work under slow_function, 30 % under
    # fast_function.
    for _ in range(rounds):
        round_trip()


def thread_a(rounds):
    for _ in range(rounds):
        unit()


def thread_b(rounds):
    for _ in range(rounds):
        unit()


def thread_c(rounds):
    for _ in range(rounds):
        unit()


def thread_d(rounds):
    for _ in range(rounds):
        unit()


def threads(rounds):
    ts = [threading.Thread(target=f, args=(rounds,)) for f in (thread_a, thread_b, thread_c, thread_d)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


async def coroutine_work(rounds):
    for _ in range(rounds):
        unit()
        await asyncio.sleep(0)


def coroutine(rounds):
    asyncio.run(coroutine_work(rounds))


def recurse(depth, rounds):
    if depth == 0:
        for _ in range(rounds):
            unit()
        return
    recurse(depth - 1, rounds)


def deep(rounds):
    recurse(100, rounds)


def key_function(v):
    unit()
    return -v


def sort_by_key(rounds):
    for _ in range(rounds // 100 + 1):
        sorted(range(100), key=key_function)


CASES = {"split": split, "threads": threads, "coroutine": coroutine, "deep": deep, "sorted": sort_by_key}


def main():
    case, rounds = sys.argv[1], int(sys.argv[2])
    sys.stdin.readline()
    CASES[case](rounds)
    print("done", flush=True)
    sys.stdin.readline()


main()
