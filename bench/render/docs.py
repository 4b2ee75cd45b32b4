"""README.md and docs/*.md: every table and headline figure rendered from a stored result.

    python -m bench.render.docs           # rewrite the rendered blocks of README.md and docs/*.md
    python -m bench.render.docs --check   # exit 1, naming each block that differs from what its data renders

A rendered block is the text between `<!-- rendered: NAME -->` and `<!-- /rendered -->`; NAME picks
its renderer in bench/render/blocks.py, which reads the stored result files it names (bench/results/*.json, written by
the bench scripts; docs/results/**, written by the commands shown beside each block). A figure in
prose is a rendered value, `<!-- value: FILE / STEP / ... / FORMAT -->0.132<!-- /value -->`: FILE is
relative to the repository, each STEP a key of a mapping, an index of a list, or KEY=VALUE (the first
element of a list whose KEY is VALUE), and FORMAT a format spec (`.3g`, `.0f`, `.1%`). A figure that
no stored result holds does not belong in these documents.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import Any

from bench.render import blocks
from bench.render.blocks import BLOCKS, ROOT

FILES = [ROOT / "README.md", *(ROOT / "docs" / f"{page}.md" for page in
                               ("guide", "tasks", "calibrate", "protocol", "reproduce", "findings"))]
BLOCK = re.compile(r"(<!-- rendered: ([\w-]+) -->\n)(.*?)(<!-- /rendered -->)", re.S)
VALUE = re.compile(r"(<!-- value: (.+?) -->)(.*?)(<!-- /value -->)", re.S)


def value(path: str) -> str:
    """A rendered value: FILE / STEP / ... / FORMAT (see the module's docstring). Besides keys, indices and
    KEY=VALUE, a step may be KEY==VALUE (keep every element of a list whose KEY is VALUE), `*` (apply the
    steps after it to each element) or `min` / `max` (reduce those elements to one)."""
    file, *steps, spec = [part.strip() for part in path.split(" / ")]
    node: Any = blocks.load(ROOT / file)
    each = False

    def step_into(item: Any, step: str) -> Any:
        if isinstance(item, list) and "=" in step:
            key, want = step.split("=", 1)
            return next(x for x in item if str(x.get(key)) == want)
        return item[int(step)] if isinstance(item, list) else item[step]

    for step in steps:
        if "==" in step:
            key, want = step.split("==", 1)
            node = [x for x in node if str(x.get(key)) == want]
        elif step == "*":
            each = True
        elif step in ("min", "max"):
            node, each = (min if step == "min" else max)(node), False
        else:
            node = [step_into(x, step) for x in node] if each else step_into(node, step)
    return format(node, spec)


def fill(text: str, blocks: dict[str, Callable[[], str]] = BLOCKS) -> str:
    """`text` with every rendered block and value replaced by what its data gives now."""
    def render(match: re.Match) -> str:
        name = match.group(2)
        if name not in blocks:
            raise SystemExit(f"unknown rendered block {name!r}; known: {', '.join(blocks)}")
        return f"{match.group(1)}{blocks[name]()}\n{match.group(4)}"

    def render_value(match: re.Match) -> str:
        return f"{match.group(1)}{value(match.group(2))}{match.group(4)}"
    return VALUE.sub(render_value, BLOCK.sub(render, text))


def refresh(check: bool = False) -> list[str]:
    """Rewrite the stale blocks of FILES (or, `check`, only name them); returns `FILE: BLOCK` for each."""
    stale = []
    for path in FILES:
        text = path.read_text()
        new = fill(text)
        if new != text:
            pairs = zip(BLOCK.finditer(text), BLOCK.finditer(new))
            stale += [f"{path.relative_to(ROOT)}: {m.group(2)}" for m, n in pairs if m.group(0) != n.group(0)]
            if not check:
                path.write_text(new)
    return stale


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block differs from its data")
    args = p.parse_args()
    stale = refresh(args.check)
    if args.check and stale:
        print("these blocks differ from their data (python -m bench.render.docs rewrites them):\n  "
              + "\n  ".join(stale))
        sys.exit(1)
    print("up to date" if not stale else "rewrote:\n  " + "\n  ".join(stale))


if __name__ == "__main__":
    main()
