"""loralpha's benchmarks: the scripts that measure its claims, their stored results (bench/results/) and the
renderers that turn those results into BENCHMARKS.md and the rendered blocks of README.md and docs/findings.md.

One folder per concern (bench/README.md says which question each answers); every script is a module run from the
repository root:

    python -m bench.<folder>.<module> [--quick]      # e.g. python -m bench.suite.quality --quick
    python -m bench.render                           # BENCHMARKS.md, then the README/findings blocks
"""
