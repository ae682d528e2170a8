"""Released-checkpoint loading (safe, strict), uniir checkpoint folders, `uniir convert`."""

from __future__ import annotations

import json
import os
import pickletools
import subprocess
import sys
import zipfile

import pytest
import torch

from uniir_cli.errors import ModelError


def _pickle_globals(path) -> set[str]:
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    found = set()
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            module, name = arg.split(" ")
            found.add(f"{'builtins' if module == '__builtin__' else module}.{name}")
    return found


def test_fabricated_container_names_the_upstream_globals(upstream_sf, upstream_globals):
    assert _pickle_globals(upstream_sf.path) == upstream_globals


def test_load_upstream_without_omegaconf(upstream_sf):
    from uniir_cli.models.checkpoint_io import load_upstream_pth

    assert "omegaconf" not in sys.modules
    ckpt = load_upstream_pth(upstream_sf.path)
    assert "omegaconf" not in sys.modules
    assert ckpt.top_level_keys == ["config", "epoch", "model", "optimizer", "scaler", "scheduler"]
    assert ckpt.epoch == 19
    assert ckpt.config["model"]["clip_vision_model_name"] == "ViT-L/14"
    assert ckpt.config["trainer_config"]["learning_rate"] == 1e-5
    assert set(ckpt.state_dict) == set(upstream_sf.state_dict)
    assert all(k.startswith("clip_model.") for k in ckpt.state_dict)
    assert all(torch.equal(ckpt.state_dict[k], v) for k, v in upstream_sf.state_dict.items())


class _Evil:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_pickle_importing_os_system_is_refused(tmp_path):
    from uniir_cli.models.checkpoint_io import load_upstream_pth

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"clip_model.x": torch.zeros(1)}, "config": _Evil(f"touch {marker}")}, path)
    with pytest.raises(ModelError, match=r"os\.system|posix\.system") as info:
        load_upstream_pth(path)
    assert "refused" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_weights_only_guard_holds_without_the_pre_scan(tmp_path, monkeypatch):
    """The clear-message scan is a convenience; torch's weights_only unpickler refuses too."""
    from uniir_cli.models import checkpoint_io

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "config": _Evil(f"touch {marker}")}, path)
    monkeypatch.setattr(checkpoint_io, "_refused_globals", lambda _path: [])
    with pytest.raises(ModelError, match="refused to load"):
        checkpoint_io.load_upstream_pth(path)
    assert not marker.exists()


def test_other_class_is_refused(tmp_path):
    from uniir_cli.models.checkpoint_io import load_upstream_pth

    path = tmp_path / "odd.pth"
    torch.save({"model": {"clip_model.x": torch.zeros(1)}, "extra": zipfile.ZipInfo("x")}, path)
    with pytest.raises(ModelError, match=r"zipfile\.ZipInfo"):
        load_upstream_pth(path)


def test_strict_key_mapping_lists_missing_and_unexpected(upstream_sf, tmp_path):
    from uniir_cli.models.checkpoint_io import load_state_dict_strict
    from uniir_cli.registry import build_model

    model = build_model("clip_sf", size="tiny", pretrained="")
    state = dict(upstream_sf.state_dict)
    state.pop("clip_model.ln_final.weight")
    state["clip_model.surprise"] = torch.zeros(2)
    state["clip_model.text_projection"] = torch.zeros(3, 3)
    with pytest.raises(ModelError) as info:
        load_state_dict_strict(model, state, source="x.pth")
    message = str(info.value)
    assert "missing keys: clip_model.ln_final.weight" in message
    assert "unexpected keys: clip_model.surprise" in message
    assert "clip_model.text_projection (3, 3) vs (64, 64)" in message


def test_upstream_prefix_quirks_are_mapped(upstream_sf):
    from uniir_cli.models.clip_fusion import map_upstream_state_dict

    state = {"module." + k: v for k, v in upstream_sf.state_dict.items()}
    state["module.clip_model.logit_scale"] = torch.tensor([4.6052])
    state["clip_model.input_resolution"] = torch.tensor(224)
    mapped = map_upstream_state_dict(state)
    assert set(mapped) == set(upstream_sf.state_dict)
    assert mapped["clip_model.logit_scale"].shape == ()


def test_blip_checkpoint_is_named(tmp_path):
    from uniir_cli.registry import identify_upstream

    with pytest.raises(ModelError, match="BLIP"):
        identify_upstream({"visual_encoder.cls_token": torch.zeros(1)}, "blip_ff_large.pth")


def test_save_and_load_folder_roundtrip(tiny_ff, tmp_path, make_image):
    from uniir_cli.models.base import Retriever
    from uniir_cli.registry import load_model

    out = tiny_ff.save_pretrained(tmp_path / "ckpt")
    meta = json.loads((out / "model.json").read_text())
    assert meta["model"] == "clip_ff" and meta["kwargs"] == {"size": "tiny", "pretrained": ""}
    assert meta["embedding_dim"] == 64 and meta["format"] == "uniir-checkpoint"
    loaded = load_model(out)
    assert isinstance(loaded, Retriever) and not loaded.training
    items = [("query text", None), (None, make_image(1, (40, 40)))]
    with torch.no_grad():
        assert torch.equal(loaded.encode(loaded.processor(items)), tiny_ff.encode(tiny_ff.processor(items)))
    from uniir_cli.models.clip_fusion import ClipScoreFusion

    with pytest.raises(ModelError, match="holds model 'clip_ff'"):
        ClipScoreFusion.from_pretrained(out)


def test_folder_errors_name_the_file(tmp_path, tiny_sf):
    from uniir_cli.registry import load_model

    with pytest.raises(ModelError, match="no model.json"):
        load_model(tmp_path)
    with pytest.raises(ModelError, match="no such checkpoint"):
        load_model(tmp_path / "nope.pth")
    out = tiny_sf.save_pretrained(tmp_path / "c")
    (out / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="model.safetensors: missing"):
        load_model(out)
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ModelError, match=r"empty.pth: empty file \(0 bytes\)"):
        load_model(tmp_path / "empty.pth")


def test_damaged_or_foreign_folders_name_the_file_and_tensor(tmp_path, tiny_sf):
    from safetensors.torch import load_file, save_file

    from uniir_cli.registry import load_model

    out = tiny_sf.save_pretrained(tmp_path / "nan")
    weights = load_file(out / "model.safetensors")
    key = sorted(k for k, v in weights.items() if v.is_floating_point())[3]
    weights[key][0] = float("nan")
    save_file(weights, out / "model.safetensors")
    with pytest.raises(ModelError, match=f"tensor {key} holds NaN or infinite values"):
        load_model(out)

    other = tiny_sf.save_pretrained(tmp_path / "other")
    meta = json.loads((other / "model.json").read_text())
    (other / "model.json").write_text(json.dumps({**meta, "model": "clip_xl_from_the_future"}))
    with pytest.raises(ModelError, match=r"other/model.json: model 'clip_xl_from_the_future' is not a registered model"):
        load_model(other)


def test_convert_cli_writes_a_loadable_folder(upstream_sf, tmp_path, make_image):
    from typer.testing import CliRunner

    from uniir_cli.app import build_app
    from uniir_cli.registry import load_model

    out = tmp_path / "converted"
    result = CliRunner().invoke(build_app(), ["convert", str(upstream_sf.path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.safetensors"]
    assert (out / "model.safetensors").stat().st_size < upstream_sf.path.stat().st_size / 2  # no optimizer state
    meta = json.loads((out / "model.json").read_text())
    assert meta["provenance"]["converted_from"] == "clip_sf_tiny.pth" and meta["provenance"]["epoch"] == 19
    items = [("a query", make_image(3, (20, 50))), (None, make_image(4, (50, 20)))]
    direct, converted = load_model(upstream_sf.path), load_model(out)
    with torch.no_grad():
        assert torch.equal(direct.encode(direct.processor(items)), converted.encode(converted.processor(items)))

    again = CliRunner().invoke(build_app(), ["convert", str(upstream_sf.path), "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    forced = CliRunner().invoke(build_app(), ["convert", str(upstream_sf.path), "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output


def test_convert_cli_refuses_evil_file_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from uniir_cli.app import build_app

    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "config": _Evil("true")}, path)
    result = CliRunner().invoke(build_app(), ["convert", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "refused to load" in result.output and not (tmp_path / "o").exists()


def test_registry_lists_models_without_importing_torch():
    code = "import sys, uniir_cli.registry as r; print(r.registered_models(), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['blip_ff', 'blip_sf', 'clip_ff', 'clip_sf', 'mllm'] False"


def test_identical_weights_give_byte_identical_files(tmp_path):
    """Saved in separate processes (safetensors' hash-map order differs between them)."""
    code = ("import sys, torch; from uniir_cli.models.checkpoint_io import save_folder; torch.manual_seed(0); "
            "save_folder(sys.argv[1], name='clip_sf', kwargs={'size': 'tiny'}, embedding_dim=4, "
            "state_dict={'b.weight': torch.randn(4, 4), 'a.bias': torch.randn(4).half()})")
    for name in ("a", "b", "c"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    files = {(tmp_path / name / "model.safetensors").read_bytes() for name in ("a", "b", "c")}
    assert len(files) == 1
