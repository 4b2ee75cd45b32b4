"""BENCHMARKS.md and the rendered blocks of README.md and docs/findings.md, from the stored results."""
