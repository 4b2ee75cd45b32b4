"""The package's shape: no import cycles, lower layers never import the outer ones, and no code outside the
rule table and the adapter builder compares rule names; bench/ has no import cycle and its renderers sit on top.
Read from the source with `ast`, module-level and function-level imports alike, so a lazy import cannot hide a
cycle."""

import ast
from pathlib import Path

import pytest

from loralpha import scaling

SRC = Path(__file__).resolve().parent.parent / "src" / "loralpha"
# one-way flow: a module may import its own layer and the layers before it, never a later one. The core is
# ordered module by module (a package counts as one), so an import against the flow between two of them fails.
CORE = ["errors", "checks", "options", "devices", "scaling", "tasks", "config", "adapters", "faults", "checkpoints",
        "runs", "diagnostics", "runlog", "loop", "sweep"]
# integrations bridges a Trainer / TRL script to the library, its calibration included: above the studies
LAYERS = [*({name} for name in CORE), {"studies"}, {"integrations"}, {"reporting"}, {"cli", "__init__", "__main__"}]


def modules(root: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under `root` (a package is its __init__)."""
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """Module -> the package modules it imports, anywhere in its body. `from pkg import sub` is an edge to
    pkg.sub (and to pkg only when a name it imports is not a submodule)."""
    mods = modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                subs = {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods}
                graph[name] |= subs
                if target in mods and len(subs) < len(node.names):
                    graph[name].add(target)
        graph[name].discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, names in enumerate(LAYERS) if top in names)


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30 and "loralpha.loop" in graph["loralpha.studies.spectrum"]  # the graph is read
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_function_level_cycle(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def late():\n    from .a import thing\n")
    (pkg / "c.py").write_text("from .a import b\n")
    assert cycles(import_graph(pkg)) == [["pkg.a", "pkg.b"]]


BENCH = SRC.parent.parent / "bench"


def test_bench_has_no_import_cycle():
    graph = import_graph(BENCH)
    assert len(graph) > 25 and "bench.decisive.plan" in graph["bench.calibration.plan"]  # the graph is read
    assert cycles(graph) == []


def test_nothing_in_bench_imports_its_renderers():
    """bench/render sits on top: it reads every benchmark's results and tables; nothing reads it back."""
    graph = import_graph(BENCH)
    assert "bench.decisive.tables" in graph["bench.render.benchmarks"]  # the graph is read
    upward = [(m, t) for m, targets in graph.items() for t in targets
              if t.startswith("bench.render") and not m.startswith("bench.render")]
    assert upward == []


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((m, t) for m, targets in graph.items() for t in targets if m != "loralpha" and layer(t) > layer(m))


def test_lower_layers_never_import_outer_ones():
    graph = import_graph()
    assert {m.split(".")[1] for m in graph if "." in m} <= set().union(*LAYERS)  # every module has its layer
    assert upward_imports(graph) == []


def test_an_import_against_the_flow_inside_the_core_is_seen():
    graph = import_graph()
    graph["loralpha.runs"].add("loralpha.loop")
    graph["loralpha.diagnostics.hessian"].add("loralpha.runlog")
    assert upward_imports(graph) == [("loralpha.diagnostics.hessian", "loralpha.runlog"),
                                     ("loralpha.runs", "loralpha.loop")]


RULE_TABLE = {"scaling.py", "adapters.py", "config.py"}  # the rule table and the adapter builder


def rule_comparisons(path: Path) -> list[str]:
    """Comparisons of something named like a rule with a rule's name, e.g. `spec.rule == "full"`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        names = [c.value for s in sides for c in (s.elts if isinstance(s, (ast.Tuple, ast.List, ast.Set)) else [s])
                 if isinstance(c, ast.Constant) and c.value in scaling.RULES]
        others = [ast.unparse(s) for s in sides if not isinstance(s, (ast.Constant, ast.Tuple, ast.List, ast.Set))]
        if names and any("rule" in o for o in others):
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_code_outside_the_rule_table_compares_rule_names():
    found = [c for p in [*SRC.rglob("*.py"), *BENCH.rglob("*.py")] if p.name not in RULE_TABLE
             for c in rule_comparisons(p)]
    assert found == []


@pytest.mark.parametrize("code", ['if spec.rule == "full": pass', 'x = config["rule"] in ("lora-alpha", "full")',
                                  'ok = rule != "loraplus"'])
def test_the_rule_name_scan_sees_a_comparison(tmp_path, code):
    path = tmp_path / "m.py"
    path.write_text(code + "\n")
    assert len(rule_comparisons(path)) == 1


def test_the_command_line_starts_without_torch_and_the_api_loads_it_on_first_use():
    """`loralpha --help`, its flags and its one-line errors need no model stack; `loralpha.train` is still the
    function (not the module of the loop) whichever module loaded the loop first."""
    import subprocess
    import sys

    code = ("import sys, loralpha.cli, loralpha.config\n"
            "assert not {'torch', 'peft', 'transformers'} & set(sys.modules), sorted(sys.modules)\n"
            "import loralpha.sweep.engine, loralpha.studies.compare, loralpha\n"
            "assert callable(loralpha.train) and loralpha.train.__module__ == 'loralpha.loop'\n"
            "assert loralpha.fit.__name__ == 'fit' and loralpha.adapt.__name__ == 'adapt'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
