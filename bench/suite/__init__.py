"""What `make bench` runs (BENCHMARKS.md §1–6): quality, convergence, search cost, the law, overheads, memory."""
