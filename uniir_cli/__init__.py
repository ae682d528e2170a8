"""uniir: universal multimodal retrieval (UniIR / M-BEIR), as one command and as a library.

The Python face (what the README's "Python API" section uses; everything else is an
implementation detail that may move):

- `evaluate(preset, run_dir=..., data_dir=..., settings=...)`: embed -> index -> retrieve ->
  score -> report over a run directory, as `uniir eval`; returns an `Evaluation`.
- `train(preset, run_dir=..., data_dir=...)`: train a retriever, as `uniir train`; returns
  the final checkpoint folder.
- `load_model(path)`: a uniir checkpoint folder or a released UniIR `.pth`;
  `build_model(name, ...)`, `list_models()`; `encode(model, items, instruction=...)`:
  embeddings of (text, image) items.
- `download_mbeir(data_dir, ...)`, `download_checkpoint(name, ...)`: as `uniir download`.
- `generate_synthetic_mbeir(root, size=...)`, `run_demo(...)`: the synthetic M-BEIR and the
  demo loop, as `uniir demo`.

Names are imported on first use, so `import uniir_cli` (and the CLI's start) stays cheap.
"""

from __future__ import annotations

from uniir_cli.lazy_face import lazy_face
from uniir_cli.version import __version__

# public name -> module under uniir_cli (":attribute" where the name differs)
_FACE = {
    "evaluate": "evaluation.pipeline",
    "Evaluation": "evaluation.pipeline",
    "train": "training.loop",
    "load_model": "registry",
    "build_model": "registry",
    "list_models": "registry:registered_models",
    "encode": "models.encode:encode_items",
    "download_mbeir": "download.mbeir",
    "download_checkpoint": "download.checkpoint",
    "generate_synthetic_mbeir": "data.synthetic",
    "run_demo": "demo",
    "DemoResult": "demo",
    "UniirError": "errors",
}

__all__ = ["__version__", *_FACE]
__getattr__, __dir__ = lazy_face(__name__, _FACE)
