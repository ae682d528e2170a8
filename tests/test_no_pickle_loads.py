"""Untrusted files are data: no module of uniir_cli may unpickle with code execution allowed.

Every `torch.load` passes `weights_only=True` (torch's restricted unpickler), `np.load` never
allows pickles, and nothing calls `pickle.load(s)` or Accelerate's pickling `load_state`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import uniir_cli

PACKAGE = Path(uniir_cli.__file__).resolve().parent


def _calls() -> list[tuple[str, ast.Call]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                found.append((f"{path.relative_to(PACKAGE)}:{node.lineno}", node))
    return found


def _name(call: ast.Call) -> str:
    func = call.func
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _keyword(call: ast.Call, name: str) -> object:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value.value if isinstance(keyword.value, ast.Constant) else "<expr>"
    return None


def test_no_unpickling_with_code_execution() -> None:
    offenders = []
    for where, call in _calls():
        name = _name(call)
        if name == "torch.load" and _keyword(call, "weights_only") is not True:
            offenders.append(f"{where} torch.load without weights_only=True")
        if name.endswith("np.load") and _keyword(call, "allow_pickle") not in (None, False):
            offenders.append(f"{where} np.load with allow_pickle")
        if name in ("pickle.load", "pickle.loads", "dill.load", "joblib.load") or name.endswith(".load_state"):
            offenders.append(f"{where} {name}")
    assert offenders == []
    assert any(_name(call) == "torch.load" for _, call in _calls()), "the scan sees the released-checkpoint reader"
