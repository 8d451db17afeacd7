"""Imports point one way: the layers ARCHITECTURE.md draws, checked over every import of the
package, function-level ones included."""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Iterator, Set, Tuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "ovos_stt_plugin_google_apikey"


def layers() -> Dict[str, int]:
    """ARCHITECTURE.md's table: the top-level module (or subpackage) -> its layer."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    found: Dict[str, int] = {}
    for layer, modules in re.findall(r"^\| (\d+) \| (.+) \|$", text, re.MULTILINE):
        for name in re.findall(r"`([\w.]+)`", modules):
            found[name] = int(layer)
    return found


def modules() -> Iterator[Tuple[str, Path]]:
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT / PACKAGE).with_suffix("").parts
        yield ".".join(parts), path


def imports(name: str, path: Path) -> Set[str]:
    """Our modules ``name`` imports anywhere in its source, as dotted names under the package."""
    package = name.split(".")[:-1]          # "server.admission" and "server.__init__": ["server"]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == PACKAGE:
                prefix = node.module.partition(".")[2]
            else:
                continue
            if node.module:
                found.add(prefix)
            else:                                   # from . import audio
                found.update(f"{prefix}.{a.name}".lstrip(".") for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.partition(".")[2] for a in node.names
                         if a.name.split(".")[0] == PACKAGE)
    return {target for target in found if target}


def graph() -> Dict[str, Set[str]]:
    edges = {name: imports(name, path) for name, path in modules()}
    known = set(edges)

    def resolve(target: str) -> str:        # a package is its __init__; `from .x import name`: x
        if target in known:
            return target
        if f"{target}.__init__" in known:
            return f"{target}.__init__"
        return resolve(target.rsplit(".", 1)[0]) if "." in target else target

    return {name: {resolve(t) for t in targets} - {name} for name, targets in edges.items()}


def top(name: str) -> str:
    return name.split(".")[0]


def test_every_module_has_a_place_in_the_architecture():
    placed = layers()
    missing = sorted({top(name) for name, _ in modules()} - set(placed))
    assert not missing, f"add these to ARCHITECTURE.md's table of layers: {missing}"


def test_imports_point_to_lower_layers_only():
    placed = layers()
    wrong = []
    for name, targets in graph().items():
        for target in targets:
            if top(target) == top(name):            # siblings inside a subpackage: no cycle below
                continue
            if placed.get(top(target), 99) >= placed.get(top(name), -1):
                wrong.append(f"{name} (layer {placed.get(top(name))}) imports {target} "
                             f"(layer {placed.get(top(target))})")
    assert not wrong, "\n".join(sorted(wrong))


def test_there_is_no_import_cycle():
    edges = graph()
    state: Dict[str, int] = {}
    cycles = []

    def visit(node: str, path: Tuple[str, ...]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + (target,)))
            elif target not in state:
                visit(target, path + (target,))
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, (node,))
    assert not cycles, "\n".join(cycles)


def test_the_walk_sees_function_level_imports():
    """The check is only worth something if it finds the imports it is meant to find."""
    edges = graph()
    assert "audio" in edges["decoding"]
    assert "recognizer" in edges["plugin"]
    assert any(top(t) == "server" for t in edges["cli"])     # cli imports the server lazily


def test_audio_is_a_leaf_and_wire_needs_no_settings():
    edges = graph()
    assert edges["audio"] <= {"errors"}, edges["audio"]
    assert "settings" not in edges["wire"]


def test_the_adapters_use_the_engines_public_api():
    """The server and the Wyoming server never reach into the recognizer's HTTP client."""
    offenders = [str(path.relative_to(ROOT)) for name, path in modules()
                 if top(name) in {"server", "wyoming", "cli"}
                 and re.search(r"recognizer\.client|getattr\([^)]*['\"]client['\"]",
                               path.read_text(encoding="utf-8"))]
    assert not offenders, offenders
