"""Contrastive losses on hand-computed examples, AdamW groups, and 2 gloo ranks vs 1 process."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from uniir_cli.models.losses import (
    _first_other_columns,
    contrastive_loss,
    hard_negative_loss,
)


def _ce(row: list[float], target: int) -> float:
    return -(row[target] - math.log(sum(math.exp(v) for v in row)))


def test_infonce_hand_computed():
    r = 1 / math.sqrt(2)
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # normalised to [1, 0] and [r, r]
    out = contrastive_loss(q, p, torch.tensor(0.0))  # exp(0) = 1
    # logits: row 0 = [1, r], row 1 = [0, r]; targets 0 and 1
    expected = (_ce([1.0, r], 0) + _ce([0.0, r], 1)) / 2
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    assert out.accuracy.item() == 1.0
    assert torch.allclose(out.logits, torch.tensor([[1.0, r], [0.0, r]]))

    scaled = contrastive_loss(q * 3.0, p, torch.tensor(math.log(10.0)))  # scale 10, norms ignored
    expected10 = (_ce([10.0, 10 * r], 0) + _ce([0.0, 10 * r], 1)) / 2
    assert scaled.loss.item() == pytest.approx(expected10, abs=1e-5)
    assert scaled.logit_scale.item() == pytest.approx(10.0)


def test_infonce_is_one_directional_and_counts_accuracy():
    # query 1 prefers candidate 0: wrong row; a symmetric loss would differ
    q = torch.tensor([[1.0, 0.0], [1.0, 0.1]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = contrastive_loss(q, p, torch.tensor(0.0))
    n1 = math.hypot(1.0, 0.1)
    expected = (_ce([1.0, 0.0], 0) + _ce([1.0 / n1, 0.1 / n1], 1)) / 2
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    assert out.accuracy.item() == 0.5


def test_logit_scale_is_learnable_and_unclamped():
    scale = torch.nn.Parameter(torch.tensor(6.0))  # exp(6) = 403 > CLIP's usual clamp of 100
    q, p = torch.randn(4, 8), torch.randn(4, 8)
    out = contrastive_loss(q, p, scale)
    out.loss.backward()
    assert out.logit_scale.item() == pytest.approx(math.exp(6.0), rel=1e-5)
    assert scale.grad is not None and scale.grad.abs().item() > 0


def test_hard_negatives_hand_computed():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    n = torch.tensor([[[0.0, 1.0]], [[1.0, 1.0]]])  # one hard negative per query
    out = hard_negative_loss(q, p, n, torch.tensor(math.log(2.0)), in_batch_neg_num=1)
    r = 1 / math.sqrt(2)
    # row i: [q.p_i, q.n_i, q.p_other] * 2
    rows = [[2.0, 0.0, 0.0], [2.0, 2 * r, 0.0]]
    assert torch.allclose(out.logits, torch.tensor(rows), atol=1e-6)
    assert out.loss.item() == pytest.approx((_ce(rows[0], 0) + _ce(rows[1], 0)) / 2, abs=1e-6)
    assert out.accuracy.item() == 1.0
    without = hard_negative_loss(q, p, n, torch.tensor(math.log(2.0)))
    assert without.logits.shape == (2, 2)


def test_shared_hard_negatives_are_columns_of_every_row_hand_computed():
    """E5-V's layout: [positives | all hard negatives] for every query, target on the diagonal."""
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    n = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])  # query 0's and query 1's hard negative
    out = contrastive_loss(q, p, torch.tensor(math.log(2.0)), negatives=n)
    r = 1 / math.sqrt(2)
    rows = [[2.0, 2 * r, 0.0, -2.0], [0.0, 2 * r, 2.0, 0.0]]
    assert torch.allclose(out.logits, torch.tensor(rows), atol=1e-6)
    assert out.loss.item() == pytest.approx((_ce(rows[0], 0) + _ce(rows[1], 1)) / 2, abs=1e-6)
    assert out.accuracy.item() == 0.5  # query 1 prefers query 0's hard negative


def test_image_samples_average_only_the_marked_rows():
    """The fork's average over the samples whose every side has an image; all rows when none is."""
    q, p = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), torch.randn(3, 4)
    per_row = torch.nn.functional.cross_entropy(contrastive_loss(q, p, torch.tensor(1.0)).logits, torch.arange(3),
                                                reduction="none")
    marked = contrastive_loss(q, p, torch.tensor(1.0), sample_mask=torch.tensor([True, False, True]))
    assert marked.loss.item() == pytest.approx(((per_row[0] + per_row[2]) / 2).item(), abs=1e-6)
    none = contrastive_loss(q, p, torch.tensor(1.0), sample_mask=torch.tensor([False, False, False]))
    assert none.loss.item() == pytest.approx(per_row.mean().item(), abs=1e-6)
    own = hard_negative_loss(q, p, p.flip(0).unsqueeze(1), torch.tensor(1.0), sample_mask=torch.tensor([False, True, False]))
    rows = torch.nn.functional.cross_entropy(own.logits, torch.zeros(3, dtype=torch.long), reduction="none")
    assert own.loss.item() == pytest.approx(rows[1].item(), abs=1e-6)


def test_the_image_samples_mask_needs_an_image_on_every_side(tiny_sf):
    proc = tiny_sf.processor
    picture = Image.new("RGB", (32, 32))
    queries = proc([("q one", picture), ("q two", picture), ("q three", None)])
    positives = proc([(None, picture), ("p two", None), (None, picture)])
    negatives = proc([(None, picture), (None, picture), (None, picture)])
    targets = tiny_sf.loss_targets([queries], [positives], [negatives], hard_neg_num=1, loss_average="image-samples")
    assert targets["sample_mask"].tolist() == [True, False, False]
    assert tiny_sf.loss_targets([queries], [positives], [], loss_average="all") == {}


def test_first_other_columns():
    assert _first_other_columns(4, 2, torch.device("cpu")).tolist() == [[1, 2], [0, 2], [0, 1], [0, 1]]
    assert _first_other_columns(3, 2, torch.device("cpu")).tolist() == [[1, 2], [0, 2], [0, 1]]


def test_model_loss_with_hard_negatives(tiny_sf):
    proc = tiny_sf.processor
    queries = proc([("q one", None), ("q two", None)])
    positives = proc([("p one", None), ("p two", None)])
    negatives = proc([("n 1a", None), ("n 1b", None), ("n 2a", None), ("n 2b", None)])
    out = tiny_sf(queries, positives, negatives, hard_neg_num=2, in_batch_neg_num=1)
    assert out.logits.shape == (2, 4) and out.loss.requires_grad
    plain = tiny_sf(queries, positives)
    assert plain.logits.shape == (2, 2)


def test_adamw_param_groups_follow_the_recipe(tiny_ff):
    from uniir_cli.models.optim import adamw_param_groups

    groups = {g["name"]: g for g in adamw_param_groups(tiny_ff, lr=1e-5, weight_decay=0.2, t5_lr=5e-4)}
    names = {id(p): n for n, p in tiny_ff.named_parameters()}
    decay = {names[id(p)] for p in groups["decay"]["params"]}
    no_decay = {names[id(p)] for p in groups["no_decay"]["params"]}
    t5 = {names[id(p)] for p in groups["t5"]["params"]}
    assert "clip_model.logit_scale" in no_decay and "clip_model.ln_final.weight" in no_decay
    assert "clip_model.visual.conv1.weight" in decay and "clip_model.positional_embedding" in decay
    assert all(tiny_ff.get_parameter(n).ndim >= 2 and "bias" not in n for n in decay)
    assert t5 and all(n.startswith("t5_layers.") for n in t5)
    assert groups["t5"]["lr"] == 5e-4 and groups["t5"]["weight_decay"] == 0.2
    assert groups["no_decay"]["weight_decay"] == 0.0 and groups["decay"]["lr"] == 1e-5
    assert len(decay) + len(no_decay) + len(t5) == len(list(tiny_ff.parameters()))
    torch.optim.AdamW(list(groups.values()), betas=(0.9, 0.98), eps=1e-6)  # accepted as is


def _run_worker(out_dir: Path, parts: str) -> dict[str, float]:
    worker = Path(__file__).with_name("dist_loss_worker.py")
    subprocess.run([sys.executable, str(worker), str(out_dir), parts], check=True, timeout=300)
    return json.loads((out_dir / "result.json").read_text())


def test_two_gloo_ranks_equal_one_process(tmp_path):
    """Loss with positives gathered over 2 ranks, DDP-averaged gradients == 1 process."""
    result = _run_worker(tmp_path, "a")
    assert result["a_logits_cols"] == 6  # 3 local queries x 6 gathered positives
    assert result["a_loss"] < 1e-6 and result["a_grad"] < 1e-6 and result["a_grad_norm"] > 1e-3


@pytest.mark.slow
def test_two_gloo_ranks_ddp_clip_sf_equal_one_process(tmp_path):
    """A tiny CLIP-SF in DistributedDataParallel, `model(queries, positives)` per step."""
    result = _run_worker(tmp_path, "b")
    assert result["b_loss"] < 1e-5 and result["b_grad"] < 1e-5 and result["b_params"] > 10
