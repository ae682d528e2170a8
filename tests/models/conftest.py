"""Fixtures for model tests: upstream-format (.pth) checkpoints written without omegaconf.

The released UniIR files pickle an OmegaConf `DictConfig`. omegaconf is not installed
here, so throwaway classes with the same module paths (`omegaconf.dictconfig.DictConfig`,
`omegaconf.base.ContainerMetadata`, `omegaconf.base.Metadata`, `omegaconf.nodes.AnyNode`)
and the same pickled state layout are put into `sys.modules` while saving, and removed
again before anything is loaded. The globals such a file names are checked against the
list the Hugging Face pickle scan shows for the real file (spec 6.1).
"""

from __future__ import annotations

import collections
import sys
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

# The globals the real clip_sf_large.pth names (HF pickle scan, spec 6.1; the same set a
# torch.save of a real omegaconf 2.4 DictConfig produces).
UPSTREAM_GLOBALS = {
    "collections.OrderedDict",
    "collections.defaultdict",
    "builtins.dict",
    "typing.Any",
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode",
    "torch.FloatStorage",
    "torch._utils._rebuild_tensor_v2",
}

UPSTREAM_CONFIG = {
    "experiment": {"exp_name": "InBatch", "instruct_status": "Instruct"},
    "model": {"name": "CLIPScoreFusion", "short_name": "CLIP_SF", "size": "Large", "clip_vision_model_name": "ViT-L/14"},
    "trainer_config": {"learning_rate": 1e-5, "num_train_epochs": 20, "gradient_accumulation_steps": 1},
    "data_config": {"image_size": "224, 224", "enable_query_instruct": True, "hard_neg_num": 0},
    "seed": 2023,
}


@contextmanager
def fake_omegaconf() -> Iterator[types.SimpleNamespace]:
    """Install stand-in omegaconf modules whose classes pickle like the real ones
    (NEWOBJ with no args, then BUILD with the instance dict)."""
    names = {
        "omegaconf.dictconfig": ["DictConfig"],
        "omegaconf.base": ["ContainerMetadata", "Metadata"],
        "omegaconf.nodes": ["AnyNode"],
    }
    saved = {name: sys.modules.get(name) for name in ["omegaconf", *names]}
    classes: dict[str, type] = {}
    sys.modules["omegaconf"] = types.ModuleType("omegaconf")
    for module_name, class_names in names.items():
        module = types.ModuleType(module_name)
        for class_name in class_names:
            cls = type(class_name, (), {"__module__": module_name})
            setattr(module, class_name, cls)
            classes[class_name] = cls
        sys.modules[module_name] = module
    try:
        yield types.SimpleNamespace(**classes)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _metadata(cls: type, key: Any, container: bool) -> Any:
    meta = cls()
    meta.__dict__.update(
        ref_type=typing.Any,
        object_type=dict if container else None,
        optional=True,
        key=key,
        flags={},
        flags_root=False,
        resolver_cache=collections.defaultdict(dict),
    )
    if container:
        meta.__dict__.update(key_type=typing.Any, element_type=typing.Any)
    return meta


def fake_config(oc: types.SimpleNamespace, value: Any, parent: Any = None, key: Any = None) -> Any:
    """An OmegaConf-shaped object tree for `value` (dicts -> DictConfig, scalars -> AnyNode)."""
    if isinstance(value, dict):
        node = oc.DictConfig()
        node.__dict__.update(_metadata=_metadata(oc.ContainerMetadata, key, True), _parent=parent)
        node.__dict__["_content"] = {k: fake_config(oc, v, node, k) for k, v in value.items()}
        return node
    node = oc.AnyNode()
    node.__dict__.update(_metadata=_metadata(oc.Metadata, key, False), _parent=parent, _val=value)
    return node


def write_upstream_checkpoint(path: Path, model: torch.nn.Module, *, epoch: int = 19) -> Path:
    """Save `model`'s weights in the released container layout (spec 6.1): `model` (state
    dict, as named by the model, e.g. `clip_model.*`), AdamW `optimizer` state, cosine
    `scheduler` state, OmegaConf `config`, `epoch`, GradScaler `scaler` state."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()  # creates exp_avg / exp_avg_sq; weight decay moves weights, saved afterwards
    for p in params:
        p.grad = None
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    state = collections.OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items())
    with fake_omegaconf() as oc:
        torch.save(
            {
                "model": state,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "config": fake_config(oc, UPSTREAM_CONFIG),
                "epoch": epoch,
                "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                           "growth_interval": 2000, "_growth_tracker": 0},
            },
            path,
        )
    return path


@pytest.fixture(scope="session")
def tiny_sf() -> torch.nn.Module:
    from uniir_cli.registry import build_model

    torch.manual_seed(0)
    return build_model("clip_sf", size="tiny", pretrained="").eval()


@pytest.fixture(scope="session")
def tiny_ff() -> torch.nn.Module:
    from uniir_cli.registry import build_model

    torch.manual_seed(1)
    return build_model("clip_ff", size="tiny", pretrained="").eval()


@pytest.fixture(scope="session")
def upstream_sf(tmp_path_factory: pytest.TempPathFactory) -> types.SimpleNamespace:
    """A tiny CLIP-SF with perturbed weights (so nothing sits at its init value), saved in
    the upstream container; `.state_dict` is what was saved, for independent references."""
    from uniir_cli.registry import build_model

    torch.manual_seed(2)
    model = build_model("clip_sf", size="tiny", pretrained="")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
        model.clip_model.logit_scale.fill_(4.6052)
    path = write_upstream_checkpoint(tmp_path_factory.mktemp("upstream") / "clip_sf_tiny.pth", model)
    return types.SimpleNamespace(path=path, state_dict={k: v.clone() for k, v in model.state_dict().items()})


@pytest.fixture(scope="session")
def upstream_ff(tmp_path_factory: pytest.TempPathFactory) -> types.SimpleNamespace:
    from uniir_cli.registry import build_model

    torch.manual_seed(3)
    model = build_model("clip_ff", size="tiny", pretrained="")
    path = write_upstream_checkpoint(tmp_path_factory.mktemp("upstream_ff") / "clip_ff_tiny.pth", model)
    return types.SimpleNamespace(path=path, state_dict={k: v.clone() for k, v in model.state_dict().items()})


def random_image(seed: int, size: tuple[int, int], mode: str = "RGB") -> Any:
    """A noise image (PIL) of `size` (width, height)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(array[..., 0] if channels == 1 else array, mode=mode)


@pytest.fixture(scope="session")
def make_image() -> Any:
    return random_image


@pytest.fixture(scope="session")
def write_upstream() -> Any:
    return write_upstream_checkpoint


@pytest.fixture(scope="session")
def upstream_globals() -> set[str]:
    return set(UPSTREAM_GLOBALS)
