"""Validation pieces: in-batch accuracy over batches of the train batch size, and the
seeded subset of val queries (`train.val_max_queries`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from uniir_cli.config import Config
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.mbeir import read_queries
from uniir_cli.training.val_recall import in_batch_accuracy, val_queries


def test_in_batch_accuracy_counts_each_query_against_its_batch_only() -> None:
    # Query i points at positive (i + 2) % 4: a miss whenever that positive shares its batch.
    positives = np.eye(4, dtype=np.float32)
    queries = 3.0 * positives[[2, 3, 0, 1]] + 0.1 * positives  # scale does not matter (cosine)
    ids = np.array([10, 11, 12, 13])
    assert in_batch_accuracy(queries, positives, ids, batch_size=2) == 1.0  # batches {0,1}, {2,3}
    assert in_batch_accuracy(queries, positives, ids, batch_size=4) == 0.0
    assert in_batch_accuracy(queries, positives, ids, batch_size=3) == pytest.approx(2 / 4)  # {0,1,2} + last {3}


def test_a_copy_of_the_own_positive_in_the_batch_is_a_hit() -> None:
    positives = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    queries = positives.copy()
    assert in_batch_accuracy(queries, positives, np.array([5, 5, 6]), batch_size=3) == 1.0
    assert in_batch_accuracy(queries, positives, np.array([5, 7, 6]), batch_size=3) == pytest.approx(2 / 3)


def test_val_subset_is_seeded_in_file_order_and_all_by_default(synthetic_tiny: Path) -> None:
    layout = MBeirLayout(synthetic_tiny)
    config = Config()
    every = [q.qid for q in read_queries(layout.path(config.data.val_queries))]
    assert [q.qid for q in val_queries(config, layout)] == every
    config.train.val_max_queries = 10
    subset = [q.qid for q in val_queries(config, layout)]
    assert len(subset) == 10 and subset == [q for q in every if q in subset]
    assert subset == [q.qid for q in val_queries(config, layout)]
    config.run.seed += 1
    assert [q.qid for q in val_queries(config, layout)] != subset
