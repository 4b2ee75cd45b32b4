"""The calibration benchmark (BENCHMARKS.md §9): `loralpha calibrate` against the decisive tables."""
