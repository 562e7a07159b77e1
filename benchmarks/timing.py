"""Best-of-N wall time: the least disturbed of several runs."""
import time


def best_times(fns, repeats: int, warm_up: bool = True) -> list[float]:
    """Best-of-`repeats` wall time of each function, running them in turn (a, b, a, b, ...) so that load
    from other processes on a shared CPU falls on both alike. warm_up=False where each has already run
    once (a correctness check before the timing)."""
    if warm_up:
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [min(t) for t in times]


def best_time(fn, repeats: int = 5) -> float:
    return best_times([fn], repeats)[0]
