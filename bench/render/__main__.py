"""Every rendered document from the stored results: BENCHMARKS.md (bench/render/benchmarks.py), then the rendered
blocks of README.md and docs/*.md (bench/render/docs.py), which quote BENCHMARKS' figures.

    python -m bench.render                      # both
    python -m bench.render.benchmarks --out F   # BENCHMARKS.md alone (--results, --out)
    python -m bench.render.docs --check         # the blocks alone (--check: change nothing, exit 1 if stale)
"""

from __future__ import annotations

import argparse

from bench.common import RESULTS, ROOT
from bench.render import benchmarks, docs


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    out = ROOT / "BENCHMARKS.md"
    out.write_text(benchmarks.render(RESULTS))
    print(f"wrote {out.relative_to(ROOT)}")
    stale = docs.refresh()
    print("blocks up to date" if not stale else "rewrote:\n  " + "\n  ".join(stale))


if __name__ == "__main__":
    main()
