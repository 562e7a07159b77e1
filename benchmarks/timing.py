"""Best-of-N wall time: the least disturbed of several runs."""
import time


def best_time(fn, repeats: int = 5) -> float:
    fn()  # warm up caches and lazy initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
