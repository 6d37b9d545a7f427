"""The layering of DESIGN.md ("Two sides, one door, and a public algorithm"), read from the code.

Every module under ``rl_mask/`` is parsed with ``ast``; every import counts, wherever it is
(module level, inside a function, under ``TYPE_CHECKING``): a lazy import is still a circle.

- the core (``rl_mask``) never imports Ray, ``envs`` or ``trainers``;
- ``rl_mask.attacks`` never imports ``rl_mask.owner`` (attacks read what crosses, public faces,
  the public algorithm ``rl_mask.mask`` and the trained model, nothing of the owner's);
- ``rl_mask.owner`` never imports ``rl_mask.attacks`` or ``rl_mask.server`` (shared helpers
  such as metrics live below all of them);
- ``rl_mask.mask`` (the public algorithm) imports neither ``owner``, ``attacks`` nor ``server``;
- ``rl_mask.server`` never imports ``rl_mask.owner``, ``rl_mask.attacks`` or ``rl_mask.use``
  (the server reaches no owner code: utility is scored on the owner's side, ``rl_mask.use.held_out``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "rl_mask"

#: (package whose modules are checked, imported prefixes it must not reach)
RULES = [
    ("rl_mask", ("ray", "envs", "trainers")),
    ("rl_mask.attacks", ("rl_mask.owner",)),
    ("rl_mask.owner", ("rl_mask.attacks", "rl_mask.server")),
    ("rl_mask.mask", ("rl_mask.owner", "rl_mask.attacks", "rl_mask.server")),
    ("rl_mask.server", ("rl_mask.owner", "rl_mask.attacks", "rl_mask.use")),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in the file, relative ones resolved."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            # ``from rl_mask import owner`` reaches rl_mask.owner: name each imported attribute too
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return out


def reaches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations() -> list[str]:
    found = []
    for path in sorted(CORE.rglob("*.py")):
        name = module_name(path)
        for line, imported in imports_of(path):
            for package, forbidden in RULES:
                if not reaches(name, package):
                    continue
                for prefix in forbidden:
                    if reaches(imported, prefix):
                        found.append(f"{path.relative_to(REPO)}:{line}: {name} imports {imported} ({package} must not import {prefix})")
    return found


def test_the_checker_sees_lazy_relative_and_from_imports(tmp_path):
    """The parser is what the rules stand on: it must see an import inside a function, a
    relative one and ``from package import module``."""
    pkg = tmp_path / "rl_mask" / "attacks"
    pkg.mkdir(parents=True)
    src = pkg / "probe.py"
    src.write_text("def f():\n    from ..owner import key\n    import ray\n\nfrom rl_mask import server\n")
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        found = imports_of(src)
    finally:
        REPO = saved
    assert (2, "rl_mask.owner.key") in found
    assert (3, "ray") in found
    assert (5, "rl_mask.server") in found


@pytest.mark.parametrize("package", [p for p, _ in RULES])
def test_layering(package):
    bad = [v for v in violations() if f"({package} must not" in v]
    assert not bad, "imports across the wall:\n" + "\n".join(bad)
