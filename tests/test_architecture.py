"""The layout's rules hold: each stage imports only the stages below it, nothing imports the CLI, no cycles.

Imports are read with ``ast`` from the source (those inside functions too), so
a forbidden import fails here even where no test runs the code that makes it.
The rules are those of ARCHITECTURE.md.
"""

import ast
import re
import shutil
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fer_keras"

SHARED = "shared"
"""The modules directly in fer_keras/ (constants, errors, io_utils ...): every stage may use them."""

MAY_IMPORT = {
    SHARED: set(),
    "faces": set(),
    "data": {"faces"},
    "models": set(),
    "ensemble": {"models"},
    "training": {"data", "models", "ensemble"},
    "inference": {"faces", "models", "ensemble"},
    "export": {"data", "models", "ensemble"},
    "serve": {"faces", "models", "ensemble", "inference"},
    "cli": {"faces", "data", "models", "ensemble", "training", "inference", "export", "serve"},
}
"""Stage → the other stages it may import (besides itself and the shared modules)."""

MAX_LINES = 600
MAX_TOP_LEVEL_MODULES = 10


def module_name(path, root):
    """``fer_keras/data/fer2013.py`` → ``fer_keras.data.fer2013``; a package's ``__init__`` → the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage_of(module):
    """The stage a module belongs to: its sub-package of fer_keras, or the shared modules at the top."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in MAY_IMPORT) else SHARED


def top_level_names(path):
    """The names a package's ``__init__`` binds at import (what ``from package import name`` can take)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def import_edges(root):
    """``{(importer, imported)}`` for every fer_keras import in the package at ``root``, and the modules.
    ``from package import name`` of a name that is neither a module nor bound by the package's ``__init__``
    gives the edge ``package.name``, which the rules then report as no module of the package."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    bound = {name: top_level_names(p) for name, p in files.items() if p.name == "__init__.py"}
    edges = set()
    for importer, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against the importer's package
                    package = importer.split(".") if path.name == "__init__.py" else importer.split(".")[:-1]
                    package = package[:len(package) - node.level + 1]
                    base = ".".join(package + ([base] if base else []))
                # `from package import module` imports the module; `from module import name` the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files
                           or (base in bound and a.name not in bound[base]) else base for a in node.names]
            else:
                continue
            edges.update((importer, t) for t in targets if t == "fer_keras" or t.startswith("fer_keras."))
    return edges, set(files)


def violations(root):
    """Every broken rule of the package at ``root``, one line each (empty when the layout holds)."""
    edges, modules = import_edges(root)
    found = []
    for importer, imported in sorted(edges):
        if imported not in modules:
            found.append(f"{importer} imports {imported}, which is no module of the package")
            continue
        source, target = stage_of(importer), stage_of(imported)
        if target == "cli" and source != "cli":
            found.append(f"{importer} imports the command line ({imported}): only fer_keras/cli/ knows flags")
        elif target not in MAY_IMPORT[source] | {source, SHARED}:
            found.append(f"{importer} ({source}) imports {imported} ({target}), a stage above or beside it")
    found += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(edges)]
    return found


def cycles(edges):
    """The import cycles among modules (strongly connected components of more than one module, or a
    module importing itself), each as a list of its modules."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_stages_import_only_what_lies_below_them():
    """Check that no module imports a stage above or beside its own, the CLI, or a module that does not
    exist, and that no import cycle exists (ARCHITECTURE.md)."""
    assert violations(PACKAGE) == []


def test_stage_packages_form_no_cycle():
    """Check that the stages' import graph is acyclic: the pipeline reads one way."""
    edges, _ = import_edges(PACKAGE)
    stage_edges = {(stage_of(a), stage_of(b)) for a, b in edges if stage_of(a) != stage_of(b)}
    assert cycles(stage_edges) == []


def test_models_import_nothing_above_them():
    """Check that fer_keras/models/ imports only itself and the shared modules (no data, training,
    ensemble, inference, export or CLI code)."""
    edges, _ = import_edges(PACKAGE)
    above = sorted(f"{a} -> {b}" for a, b in edges
                   if stage_of(a) == "models" and stage_of(b) not in ("models", SHARED))
    assert above == []


def test_no_library_module_over_600_lines_and_few_at_the_top():
    """Check that every module stays small (at most 600 lines) and at most ten sit directly in fer_keras/."""
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
    assert len(list(PACKAGE.glob("*.py"))) <= MAX_TOP_LEVEL_MODULES


def test_no_package_name_hides_one_of_its_modules():
    """Check that no stage package binds a submodule's name to something else (``fer_keras.export.fuse``
    the function would hide ``fer_keras.export.fuse`` the module from ``import ... as`` and monkeypatch)."""
    hidden = []
    for init in PACKAGE.rglob("__init__.py"):
        modules = {p.stem for p in init.parent.glob("*.py")} | {p.name for p in init.parent.iterdir() if p.is_dir()}
        package = module_name(init, PACKAGE)
        for node in ast.parse(init.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ImportFrom) and node.module != package:
                names = [a.asname or a.name for a in node.names]
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            else:
                continue
            hidden += [f"{package}.{name}" for name in names if name in modules]
    assert hidden == []


FLAG = re.compile(r"(?<![\w-])--[a-z]")
"""A command-line flag in a string: ``--time-budget`` (not ``a--b`` or a ``----`` rule)."""

def flag_mentions(root):
    """``path:line`` of every string (docstrings too) outside ``cli/`` that names a flag."""
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith("cli/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and FLAG.search(node.value):
                found.append(f"{relative}:{node.lineno}")
    return found


def test_only_the_cli_names_flags():
    """Check that library strings name parameters, never command-line flags (only fer_keras/cli/ knows them)."""
    assert flag_mentions(PACKAGE) == []


def test_the_rules_catch_a_forbidden_import(tmp_path):
    """Check that the checker reports a planted library import of the CLI, a models import of training,
    a data import of the ensemble, a new cycle, and an import of a module that is not where it is sought."""
    copy = tmp_path / "fer_keras"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    plants = {"models/vgg.py": "from fer_keras.training import train",
              "data/dataset.py": "from fer_keras.cli.common import run_cli",
              "data/labels.py": "from fer_keras.ensemble import Ensemble",
              "ensemble/combine.py": "from fer_keras.ensemble import selection",
              "data/convert.py": "from fer_keras import _csv_kernel"}
    for file, line in plants.items():
        with open(copy / file, "a", encoding="utf-8") as fh:
            fh.write(f"\n\ndef _planted():\n    {line}\n")
    found = "\n".join(violations(copy))
    assert "fer_keras.models.vgg (models) imports fer_keras.training (training)" in found
    assert "fer_keras.data.dataset imports the command line (fer_keras.cli.common)" in found
    assert "fer_keras.data.labels (data) imports fer_keras.ensemble (ensemble)" in found
    assert "import cycle: fer_keras.ensemble.combine -> fer_keras.ensemble.selection" in found
    assert "fer_keras.data.convert imports fer_keras._csv_kernel, which is no module of the package" in found
