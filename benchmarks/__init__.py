"""Speed benchmarks: each prints its speed against a naive baseline measured in the same run."""
