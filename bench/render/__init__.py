"""BENCHMARKS.md and the rendered blocks of README.md and docs/*.md, from the stored results."""
