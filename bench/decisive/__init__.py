"""The decisive benchmark (BENCHMARKS.md §7): every rule tuned on a lattice of η, 3 seeds at each best η."""
