"""Registry and model construction: names, options, initial weights."""

from __future__ import annotations

import pytest
import torch

from uniir_cli.errors import ConfigError
from uniir_cli.registry import (
    build_model,
    get_model_class,
    register_model,
    registered_models,
)


def test_builtin_models_are_listed():
    assert {"clip_sf", "clip_ff"} <= set(registered_models())
    assert get_model_class("clip_sf").registry_name == "clip_sf"


def test_unknown_name_and_options_are_config_errors():
    with pytest.raises(ConfigError, match="clip_ff, clip_sf"):
        build_model("clip_xx")
    with pytest.raises(ConfigError, match="does not take option.*hidden.*it takes: size, pretrained"):
        build_model("clip_sf", size="tiny", pretrained="", hidden=3)
    with pytest.raises(ConfigError, match="not a CLIP size"):
        build_model("clip_sf", size="huge", pretrained="")


def test_register_model_rejects_a_second_class_for_a_name():
    from uniir_cli.models.clip_fusion import ClipScoreFusion

    with pytest.raises(ValueError, match="already registered"):
        register_model("clip_sf")(type("Other", (ClipScoreFusion,), {}))


def test_embedding_dims_and_interface(tiny_sf, tiny_ff):
    from uniir_cli.models.base import Retriever

    for model in (tiny_sf, tiny_ff):
        assert isinstance(model, Retriever) and model.embedding_dim == 64
        batch = model.processor([("text", None)])
        assert len(batch) == 1 and model(batch).shape == (1, 64)


def test_tiny_has_no_pretrained_weights():
    with pytest.raises(ConfigError, match="no pretrained weights"):
        build_model("clip_sf", size="tiny", pretrained="openai")


def test_unknown_pretrained_tag_lists_known_ones():
    with pytest.raises(ConfigError, match="openai"):
        build_model("clip_sf", size="base", pretrained="not-a-tag")


def test_pretrained_from_an_open_clip_weights_file(tmp_path, tiny_sf):
    """`pretrained` may name a local open_clip weights file; CLIP-FF drops text_projection."""
    from safetensors.torch import save_file

    weights = {k: v.contiguous() for k, v in tiny_sf.clip_model.state_dict().items()}
    path = tmp_path / "open_clip_model.safetensors"
    save_file(weights, str(path))
    ff = build_model("clip_ff", size="tiny", pretrained=str(path))
    assert torch.equal(ff.clip_model.visual.proj, tiny_sf.clip_model.visual.proj)
    assert ff.clip_model.text_projection is None
    sf = build_model("clip_sf", size="tiny", pretrained=str(path))
    assert torch.equal(sf.clip_model.text_projection, tiny_sf.clip_model.text_projection)


def test_a_family_registers_its_own_upstream_recogniser():
    """A family outside uniir announces which released state dicts are its own; the
    registry asks every recogniser and names the file when none claims it."""
    from uniir_cli.errors import ModelError
    from uniir_cli.registry import _UPSTREAM, identify_upstream, register_upstream

    seen = []

    @register_upstream("toy_encoder.")
    def identify_toy(state_dict, source, keep_training_state):
        seen.append((source, keep_training_state))
        return "toy", {"width": int(state_dict["toy_encoder.weight"].shape[0])}

    try:
        state = {"toy_encoder.weight": torch.zeros(7, 3)}
        assert identify_upstream(state, "toy.pth", keep_training_state=True) == ("toy", {"width": 7})
        assert seen == [("toy.pth", True)]
        assert identify_upstream({"clip_model.visual.conv1.weight": torch.zeros(1)}, "c.pth") != ("toy", {})
    except ModelError as exc:  # the CLIP recogniser refuses the incomplete CLIP dict: still not ours
        assert "CLIP" in str(exc)
    finally:
        _UPSTREAM[:] = [entry for entry in _UPSTREAM if entry[1] is not identify_toy]
    with pytest.raises(ModelError, match="weird.pth: not a UniIR model state dict"):
        identify_upstream({"other.weight": torch.zeros(1)}, "weird.pth")
