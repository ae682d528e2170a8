"""BLIP's momentum-queue contrastive loss (spec 5.7) on small hand-checkable cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from uniir_cli.errors import ConfigError, ModelError
from uniir_cli.models.blip import momentum as mq
from uniir_cli.registry import build_model

E = torch.eye(2)


def _loss(ids, idx_queue, alpha=0.0, temp=1.0, query_queue=None):
    query_queue = torch.zeros(2, 2) if query_queue is None else query_queue
    return mq.momentum_contrastive_loss(
        E.clone().requires_grad_(), E.clone().requires_grad_(), E, E, torch.tensor(ids),
        torch.tensor(temp, requires_grad=True), query_queue, E.clone(), torch.tensor([idx_queue]), alpha,
    )


def test_hard_targets_by_hand():
    # q2c row i: [q_i.p_m0, q_i.p_m1, q_i.c0, q_i.c1] = one-hot(i) twice -> CE = log(2 + 2/e);
    # c2q row i: [p_i.q_m0, p_i.q_m1, 0, 0] -> CE = log(1 + 3/e); the loss is their mean.
    out = _loss([1, 2], [-100, -100])
    want = (math.log(2 + 2 / math.e) + math.log(1 + 3 / math.e)) / 2
    assert out.loss.item() == pytest.approx(want, abs=1e-6)
    assert out.logits.shape == (2, 4) and out.logit_scale.item() == pytest.approx(1.0)


def test_equal_ids_in_batch_and_queue_are_all_positives():
    # ids [5, 5], queue ids [5, -100]: targets [1/3, 1/3, 1/3, 0] for both rows and directions
    out = _loss([5, 5], [5, -100])
    q2c = torch.tensor([[1.0, 0, 1, 0], [0, 1.0, 0, 1]])
    c2q = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    t = torch.tensor([1 / 3, 1 / 3, 1 / 3, 0])
    want = (-(F.log_softmax(q2c, 1) * t).sum(1).mean() - (F.log_softmax(c2q, 1) * t).sum(1).mean()) / 2
    assert out.loss.item() == pytest.approx(want.item(), abs=1e-6)


def test_soft_targets_mix_momentum_softmax_with_alpha():
    # online == momentum features: with alpha 1 the target is softmax(sims) itself -> CE = entropy
    out = _loss([1, 2], [-100, -100], alpha=1.0, temp=0.5)
    q2c = torch.tensor([[1.0, 0, 1, 0], [0, 1.0, 0, 1]]) / 0.5
    c2q = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]) / 0.5

    def entropy(s):
        return -(F.softmax(s, 1) * F.log_softmax(s, 1)).sum(1).mean()

    assert out.loss.item() == pytest.approx(((entropy(q2c) + entropy(c2q)) / 2).item(), abs=1e-6)


def test_gradients_reach_online_features_and_temperature_only():
    q, p = E.clone().requires_grad_(), (E * 0.5).requires_grad_()
    q_m = E.clone().requires_grad_()
    temp = torch.tensor(0.3, requires_grad=True)
    out = mq.momentum_contrastive_loss(q, p, q_m, E, torch.tensor([1, 2]), temp, torch.zeros(2, 2), E.clone(),
                                       torch.full((1, 2), -100), 0.4)
    out.loss.backward()
    assert q.grad is not None and p.grad is not None and temp.grad is not None and q_m.grad is None


def test_enqueue_advances_and_wraps_the_pointer():
    qq, cq, iq, ptr = mq.init_queues(2, 4)
    mq.enqueue(qq, cq, iq, ptr, E, 2 * E, torch.tensor([7, 8]))
    assert int(ptr) == 2 and iq.tolist() == [[7, 8, -100, -100]] and torch.equal(qq[:, :2], E) and torch.equal(cq[:, :2], 2 * E)
    mq.enqueue(qq, cq, iq, ptr, E, E, torch.tensor([9, 10]))
    assert int(ptr) == 0 and iq.tolist() == [[7, 8, 9, 10]]
    with pytest.raises(ModelError, match="queue_size = 4 is not a multiple of the global batch 3"):
        mq.enqueue(qq, cq, iq, ptr, torch.ones(3, 2), torch.ones(3, 2), torch.arange(3))


def test_queues_are_seeded_unit_columns():
    a, b = mq.init_queues(8, 6), mq.init_queues(8, 6)
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # identical on every rank, no broadcast
    assert torch.allclose(a[0].norm(dim=0), torch.ones(6)) and not torch.equal(a[0], a[1])
    assert a[2].eq(-100).all() and a[3].tolist() == [0]


def test_momentum_update_is_an_ema():
    online, shadow = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = shadow.weight.detach().clone()
    mq.momentum_update([(online, shadow)], 0.9)
    assert torch.allclose(shadow.weight, 0.9 * before + 0.1 * online.weight.detach())


def _batches(model, make_image):
    queries = model.processor([("red circle", None), ("blue star", make_image(0, (32, 32))), ("sky", None), ("car", None)])
    positives = model.processor([(None, make_image(i, (32, 32))) for i in range(1, 5)])
    positives.tensors["did"] = torch.tensor([11, 12, 13, 11])
    return queries, positives


def test_model_updates_momentum_before_features_clamps_temp_and_enqueues(make_image):
    torch.manual_seed(0)
    model = build_model("blip_ff", size="tiny", momentum=0.0, queue_size=8).eval()  # eval: no dropout
    with torch.no_grad():
        for p in model.visual_encoder.parameters():
            p.add_(0.1)  # online != momentum copy
        model.temp.fill_(1.0)
    queries, positives = _batches(model, make_image)
    out = model(queries, positives, progress=0.5)
    out.loss.backward()
    assert model.temp.item() == pytest.approx(0.5)  # clamped to [0.001, 0.5] before use
    with torch.no_grad():  # momentum 0: the momentum copy equals the updated online weights
        q = F.normalize(model.encode(queries), dim=-1)
    assert torch.allclose(model.query_queue[:, :4], q.t(), atol=1e-6)
    assert model.idx_queue[0, :4].tolist() == [11, 12, 13, 11] and int(model.new_ptr_queue) == 4
    assert model.visual_encoder.cls_token.grad is not None and model.visual_encoder_m.cls_token.grad is None
    assert not any(p.requires_grad for p in model.text_encoder_m.parameters())


def test_alpha_ramps_over_the_first_epoch(make_image, monkeypatch):
    from uniir_cli.models.blip import model as blip_model

    seen = []
    real = blip_model.momentum_contrastive_loss
    monkeypatch.setattr(blip_model, "momentum_contrastive_loss", lambda *a: seen.append(a[-1]) or real(*a))
    model = build_model("blip_ff", size="tiny", queue_size=8, alpha=0.4).eval()
    queries, positives = _batches(model, make_image)
    for progress in (0.0, 0.5, 1.0, 3.2):
        model(queries, positives, progress=progress)
    assert seen == pytest.approx([0.0, 0.2, 0.4, 0.4])


def test_hard_negatives_and_missing_ids_are_clear_errors(make_image):
    model = build_model("blip_sf", size="tiny", queue_size=8)
    queries, positives = _batches(model, make_image)
    with pytest.raises(ConfigError, match="hard_neg_num"):
        model(queries, positives, positives, hard_neg_num=1)
    del positives.tensors["did"]
    with pytest.raises(ModelError, match="candidate ids"):
        model(queries, positives)


def test_two_gloo_ranks_share_identical_queues(tmp_path):
    """Seeded queues start equal on every rank (no broadcast); the no-grad all-gather
    enqueues every rank's batch in rank order, so they stay equal (DDP broadcast_buffers off)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    worker = Path(__file__).with_name("blip_dist_worker.py")
    proc = subprocess.run([sys.executable, str(worker), str(tmp_path)], timeout=300, check=False, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["started_same"] and result["ended_same"]
    assert result["idx_queue"] == [[0, 1, 100, 101, -100, -100, -100, -100]] and result["ptr"] == 4


def test_vit_gradient_checkpointing_gives_the_same_gradients(make_image):
    grads = []
    for enable in (False, True):
        torch.manual_seed(0)
        model = build_model("blip_ff", size="tiny", queue_size=8, vit_ckpt_layer=1, augment=False).eval()
        model.set_grad_checkpointing(enable)
        model.train()
        queries, positives = _batches(model, make_image)
        model(queries, positives, progress=1.0).loss.backward()
        grads.append(model.visual_encoder.blocks[1].attn.qkv.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
