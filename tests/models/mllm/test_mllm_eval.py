"""`uniir eval --preset e5v` end to end on the synthetic M-BEIR with a tiny LLaVA-NeXT: every
metric rescored independently, stored vectors equal to items encoded alone (length-grouped
batches go back to item order), the fork's columns in the report, search, and the download
of a Hub MLLM into the Hugging Face cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.download.download_fakes import make_hub_cache, use_offline_cache
from tests.evaluation.test_eval_end_to_end import _brute_force_recall
from uniir_cli.app import build_app
from uniir_cli.data.benchmark import EVAL_PAIRS
from uniir_cli.models.encode import encode_items, length_grouped_batches
from uniir_cli.registry import build_model
from uniir_cli.rundir import RunDir

runner = CliRunner()
APP = build_app()
OPTIONS = ["--set", "model.options.dtype=fp32", "--set", "model.options.max_image_tokens=14", "--set", "embed.shard_size=16",
           "--set", "embed.batch_size=8", "--set", "embed.num_workers=1"]


@pytest.fixture(scope="module")
def mllm_run(tiny_mllms: dict[str, Path], synthetic_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "e5v-tiny"
    result = runner.invoke(APP, ["eval", "--preset", "e5v", "--checkpoint", str(tiny_mllms["llava_next"]), "--data-dir",
                                 str(synthetic_tiny), "--run-dir", str(run_dir), "--pool", "both", *OPTIONS])
    assert result.exit_code == 0, result.output
    return run_dir


def test_every_metric_agrees_with_an_independent_rescoring(mllm_run: Path, synthetic_tiny: Path) -> None:
    run = RunDir(mllm_run)
    metrics = json.loads(run.metrics_json.read_text())
    for pair in EVAL_PAIRS:
        for pool in ("local", "global"):
            for k in pair.recall_ks:
                assert metrics["pairs"][pool][pair.name][f"Recall@{k}"] == _brute_force_recall(run, synthetic_tiny, pair, pool, k)
    stored = run.stored_config().model
    assert stored.name == "mllm" and stored.options["max_image_tokens"] == 14 and stored.options["dtype"] == "fp32"
    embedded_with = run.recorded("embedded_with")  # the manifest names what made the vectors
    assert embedded_with["model"] == "mllm" and embedded_with["embedding_dim"] == 64
    assert {k: embedded_with["options"][k] for k in ("prompt", "dtype", "max_image_tokens")} == {
        "prompt": "e5v", "dtype": "fp32", "max_image_tokens": 14}


def test_stored_vectors_are_the_items_encoded_alone(mllm_run: Path, synthetic_tiny: Path, tiny_mllms: dict[str, Path]) -> None:
    """The candidates were embedded in length-grouped batches of 8; each stored row must be its own item."""
    directory = RunDir(mllm_run).embeddings_dir("candidates_test")
    shards = sorted(directory.glob("shard-*.ids.npy"))
    ids = np.concatenate([np.load(s) for s in shards])
    vectors = np.concatenate([np.load(str(s).replace(".ids.npy", ".npy")) for s in shards]).astype(np.float32)
    pool = [json.loads(line) for line in (synthetic_tiny / "cand_pool/global/mbeir_union_test_cand_pool.jsonl").read_text().splitlines()]
    by_id = {int(c["did"].split(":")[0]) * 10_000_000 + int(c["did"].split(":")[1]): c for c in pool}
    model = build_model("mllm", pretrained=str(tiny_mllms["llava_next"]), prompt="e5v", dtype="fp32", max_image_tokens=14)
    rows = list(range(0, len(ids), 7))
    items = [(by_id[int(ids[r])]["txt"] or None, synthetic_tiny / p if (p := by_id[int(ids[r])]["img_path"]) else None) for r in rows]
    alone = np.concatenate([encode_items(model, [item], batch_size=1) for item in items])
    np.testing.assert_allclose(vectors[rows], alone, atol=2e-3)


def test_length_grouped_batches_keep_shards_and_sort_by_modality_then_length() -> None:
    class Items:
        texts = ["a long caption of many words", None, "short", "mid length text", None, "xy"]

        def raw(self, row: int):  # noqa: ANN201
            from uniir_cli.data.loaders import RawItem

            text = self.texts[row]
            return RawItem(str(row), text, None if text else f"img{row}.jpg")

    batches = length_grouped_batches(Items(), range(1, 6), batch_size=2)
    assert batches == [[5, 2], [3, 1], [4]]  # texts by length, then the images; rows outside the range untouched


def test_the_report_shows_the_fork_columns_and_search_works(mllm_run: Path) -> None:
    result = runner.invoke(APP, ["report", "--run-dir", str(mllm_run), "--json", "--references"])
    assert result.exit_code == 0, result.output
    local = {row["dataset"]: row for row in json.loads(result.output)["local"]}
    assert local["mscoco_task0"]["fork e5v (fork prompts)"] == 70.58
    assert local["mscoco_task0"]["Δ fork e5v (fork prompts)"] == round(local["mscoco_task0"]["e5v-tiny"] - 70.58, 2)
    result = runner.invoke(APP, ["search", "--run-dir", str(mllm_run), "--text", "a red circle", "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    hits = [json.loads(line) for line in result.output.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_another_prompt_on_the_same_folder_is_another_model(mllm_run: Path) -> None:
    result = runner.invoke(APP, ["eval", "--run-dir", str(mllm_run), "--set", "model.options.prompt=llava-phi3"])
    assert result.exit_code == 2 and "new run directory" in result.output


def test_download_checkpoint_fetches_the_hub_repo_into_the_cache_and_the_preset_finds_it(
    tiny_mllms: dict[str, Path], synthetic_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = use_offline_cache(tmp_path, monkeypatch)
    folder = tiny_mllms["llava_next"]
    make_hub_cache(cache, "models--royokong--e5-v", {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()})
    result = runner.invoke(APP, ["download", "checkpoint", "e5v", "--no-disk-check"])
    assert result.exit_code == 0, result.output
    assert "downloaded:" in result.output and "uniir eval --preset e5v" in result.output
    result = runner.invoke(APP, ["eval", "--preset", "e5v", "--data-dir", str(synthetic_tiny), "--run-dir", str(tmp_path / "run"),
                                 "--tasks", "mscoco_task0", "--pool", "local", *OPTIONS])
    assert result.exit_code == 0, result.output
    assert "mscoco_task0" in result.output


def test_download_checkpoint_lists_and_checks_a_local_copy(tiny_mllms: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(APP, ["download", "checkpoint", "--list"])
    assert result.exit_code == 0, result.output
    for name in ("e5v: royokong/e5-v", "llava-phi3-mini: xtuner/llava-phi-3-mini-hf", "gme-qwen2vl-2b", "vlm2vec-qwen2vl-2b"):
        assert name in result.output
    result = runner.invoke(APP, ["download", "checkpoint", "e5v", "--from-dir", str(tiny_mllms["llava_next"])])
    assert result.exit_code == 0, result.output
    assert f"--checkpoint {tiny_mllms['llava_next']}" in result.output.replace("\n", "")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    result = runner.invoke(APP, ["download", "checkpoint", "e5v", "--from-dir", str(tmp_path)])
    assert result.exit_code != 0 and "model_type 'bert' is not a supported MLLM" in result.output


@pytest.mark.slow
def test_two_gloo_ranks_embed_an_mllm_into_the_files_of_one_process(tiny_mllms: dict[str, Path], synthetic_tiny: Path,
                                                                     tmp_path: Path) -> None:
    """The sharded embed step with an MLLM: length-grouped batches within each shard, so 2 ranks
    write the bytes 1 process writes (both with one torch thread, as accelerate gives a CPU rank)."""
    import os
    import subprocess
    import sys

    from tests.launchers import two_ranks

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    args = ["embed", "--preset", "e5v", "--checkpoint", str(tiny_mllms["llava_next"]), "--data-dir", str(synthetic_tiny),
            "--pool", "local", "--tasks", "mscoco_task0", "--tasks", "cirr_task7", *OPTIONS]
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, "-m", "uniir_cli", *args, "--run-dir", str(one)], check=True, capture_output=True, env=env)
    result = subprocess.run([*two_ranks("torchrun"), *args, "--run-dir", str(two)], env=env, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]

    def files(run: Path) -> dict[str, bytes]:
        return {str(p.relative_to(run)): p.read_bytes() for p in sorted((run / "embeddings").rglob("*")) if p.is_file()}

    expected, got = files(one), files(two)
    assert len([name for name in expected if name.endswith(".npy")]) >= 4 and got.keys() == expected.keys()
    assert [name for name in expected if got[name] != expected[name]] == []
