"""The package's module graph: no import cycles, no private names used across modules
(issue 11). Imports inside functions count too: a lazy import still ties two modules."""

import ast
import os
import re

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "illustration_tl")


def _modules() -> dict[str, str]:
    mods = {}
    for dirpath, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".py") and not name.endswith("_test.py"):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                mods[rel.removesuffix(".__init__")] = path
    return mods


def _graph(mods: dict[str, str]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    targets.append(full if full in mods else node.module)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            graph[mod] |= {t for t in targets if t in mods and t != mod}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_the_package_modules():
    mods = _modules()
    assert "illustration_tl.features.embeddings" in mods and "illustration_tl.commands.app" in mods
    assert _cycles(_graph(mods)) == []


def test_no_private_name_of_another_module_is_used():
    mods = _modules()
    short = {m.rsplit(".", 1)[-1] for m in mods}
    pattern = re.compile(r"\b([a-z_]+)\._[a-z][a-z0-9_]*\(")
    uses = []
    for mod, path in mods.items():
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                for owner in pattern.findall(line):
                    if owner in short and owner != mod.rsplit(".", 1)[-1]:
                        uses.append(f"{path}:{number}: {line.strip()}")
    assert uses == []


# The packages from the bottom up (docs/architecture.md): a module imports only from its
# own package and the packages before it. The top-level ``errors`` is below everything;
# ``api`` and ``cli`` are the top.
LAYERS = ("errors", "core", "models", "datasets", "features", "evaluation", "heads",
          "training", "serving", "pipelines", "commands", "api", "cli")


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"  # the package's __init__: its lazy attributes come from api
    return parts[1]


def _upward(graph: dict[str, set[str]]) -> list[str]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    return sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets
                  if rank[_layer(t)] > rank[_layer(m)])


def test_every_module_sits_in_a_documented_package():
    assert sorted({_layer(m) for m in _modules()} - set(LAYERS)) == []


def test_the_layer_check_finds_a_planted_upward_import():
    graph = {"illustration_tl.core.files": {"illustration_tl.heads.svm"},
             "illustration_tl.heads.svm": {"illustration_tl.core.files"}}
    assert _upward(graph) == ["illustration_tl.core.files -> illustration_tl.heads.svm"]


def test_packages_import_only_downward():
    assert _upward(_graph(_modules())) == []


def test_only_the_entry_modules_sit_at_the_top():
    top = sorted(name for name in os.listdir(ROOT) if name.endswith(".py"))
    assert top == ["__init__.py", "api.py", "cli.py", "errors.py"]


# Inside datasets (docs/architecture.md, issue 19: "a thin builder, sources apart"): the
# primitives (ingestion, batch_ingestion, name_mapping, imagenet, iconify, splits) at the
# bottom, then the builder's sources beside it in the illustrations package, then the thin
# builder (and the package's __init__, which registers it with TFDS), then input_pipeline.
DATASETS = "illustration_tl.datasets"
DATASETS_TOP = ("illustration_tl.datasets.input_pipeline",)
DATASETS_BUILDER = ("illustration_tl.datasets.illustrations",
                    "illustration_tl.datasets.illustrations.illustrations_dataset_builder")
DATASETS_SOURCES = "illustration_tl.datasets.illustrations."


def _datasets_tier(module: str) -> int:
    if module in DATASETS_TOP:
        return 3
    if module in DATASETS_BUILDER:
        return 2
    return 1 if module.startswith(DATASETS_SOURCES) else 0


def _datasets_upward(graph: dict[str, set[str]]) -> list[str]:
    inside = lambda m: m == DATASETS or m.startswith(DATASETS + ".")  # noqa: E731
    return sorted(f"{m} -> {t}" for m, targets in graph.items() if inside(m)
                  for t in targets if inside(t) and _datasets_tier(t) > _datasets_tier(m))


def test_the_datasets_check_finds_a_source_importing_the_builder():
    source = "illustration_tl.datasets.illustrations.curated_folders"
    builder = "illustration_tl.datasets.illustrations.illustrations_dataset_builder"
    graph = {source: {builder, "illustration_tl.datasets.splits"},
             builder: {source}, "illustration_tl.datasets.splits": set()}
    assert _datasets_upward(graph) == [f"{source} -> {builder}"]


def test_the_builder_sits_on_its_sources_and_nothing_below_imports_it():
    mods = _modules()
    assert [_datasets_tier(m) for m in (
        "illustration_tl.datasets.batch_ingestion",
        "illustration_tl.datasets.illustrations.curated_folders",
        "illustration_tl.datasets.illustrations.illustrations_dataset_builder",
        "illustration_tl.datasets.input_pipeline")] == [0, 1, 2, 3]
    assert all(m in mods for m in DATASETS_TOP + DATASETS_BUILDER)
    assert _datasets_upward(_graph(mods)) == []


MAX_MODULE_LINES = 500  # issue 19: no module over 500 lines


def test_no_module_is_over_the_line_limit():
    long = []
    for path in _modules().values():
        with open(path, encoding="utf-8") as f:
            lines = sum(1 for _ in f)
        if lines > MAX_MODULE_LINES:
            long.append(f"{path}: {lines} lines")
    assert long == []
