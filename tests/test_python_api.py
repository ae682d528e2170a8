"""The README's Python API: the face `import uniir_cli` gives, and the README's script run as written."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import numpy as np

import uniir_cli

README = Path(__file__).resolve().parent.parent / "README.md"
FACE = [
    "DemoResult", "Evaluation", "UniirError", "__version__", "build_model", "download_checkpoint", "download_mbeir",
    "encode", "evaluate", "generate_synthetic_mbeir", "list_models", "load_model", "run_demo", "train",
]


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_face_is_pinned_and_resolves() -> None:
    assert sorted(uniir_cli.__all__) == FACE
    for name in FACE:
        assert getattr(uniir_cli, name) is not None
    assert "clip_sf" in uniir_cli.list_models()


def test_readme_example_runs_as_written(tmp_path: Path) -> None:
    namespace: dict[str, object] = {}
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(readme_example(), "README.md (Python API)", "exec"), namespace)
    finally:
        os.chdir(cwd)
    printed = dict(line.split() for line in out.getvalue().splitlines())
    # The numbers the README states, from the run files as well as from the printout.
    assert printed == {"untrained": "22.4%", "trained": "55.2%"}
    assert namespace["trained"].metrics == uniir_cli.evaluate(run_dir=tmp_path / "runs/demo").metrics
    vectors = namespace["vectors"]
    assert vectors.shape == (1, namespace["model"].embedding_dim) and np.isfinite(vectors).all()
    assert (tmp_path / namespace["checkpoint"] / "model.json").is_file()
