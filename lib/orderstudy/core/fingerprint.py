"""Fingerprints of Python code, for cache keys that change when the code that made a result does.

A fingerprint is the SHA-256 of each module's syntax tree with its docstrings removed
(``ast.dump`` without line numbers), so editing a comment, a docstring, blank lines or the layout
of a line leaves it as it was, and any change to what the code does changes it. The tree is the
one the running Python parses: another Python minor version may dump a different tree for the
same source (a new node field), and so give another fingerprint.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def module_fingerprint(source: str, name: str = "<module>") -> str:
    """Return the hex SHA-256 of ``source``'s syntax tree without docstrings (comments are not in it).

    >>> module_fingerprint("x = 1  # one") == module_fingerprint('"Doc."\\nx = 1\\n')
    True
    >>> module_fingerprint("x = 1") == module_fingerprint("x = 2")
    False
    """
    tree = _without_docstrings(ast.parse(source, name))
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def code_fingerprint(paths) -> str:
    """Return a 16-hex-digit fingerprint of the ``.py`` files in ``paths`` (files or directories).

    A directory counts every ``.py`` file below it, each under its path relative to the directory,
    so renaming a module changes the fingerprint and moving the whole directory does not.
    """
    digest = hashlib.sha256()
    for root in sorted(Path(p) for p in paths):
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        if not files:
            raise FileNotFoundError(f"{root}: no Python source to fingerprint")
        for f in files:
            rel = f.relative_to(root).as_posix() if root.is_dir() else f.name
            digest.update(rel.encode() + b"\0")
            digest.update(module_fingerprint(f.read_text(encoding="utf-8"), str(f)).encode() + b"\0")
    return digest.hexdigest()[:16]
