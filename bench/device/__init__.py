"""Speed targets and the GPU check (BENCHMARKS.md §8)."""
