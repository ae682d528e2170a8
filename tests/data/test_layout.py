"""Which trees count as the published M-BEIR (the paper's numbers are shown next to those only)."""

from __future__ import annotations

import shutil
from pathlib import Path

from uniir_cli.data.layout import PUBLISHED_UNION_TEST_BYTES, MBeirLayout


def test_only_a_tree_with_the_published_union_pool_counts_as_mbeir(synthetic_tiny: Path, tmp_path: Path) -> None:
    assert not MBeirLayout(synthetic_tiny).is_published_mbeir()  # the synthetic tree says what it is
    tree = tmp_path / "tree"
    shutil.copytree(synthetic_tiny, tree)
    (tree / "SYNTHETIC.json").unlink()
    assert not MBeirLayout(tree).is_published_mbeir()  # a small tree of one's own
    union = tree / "cand_pool/global/mbeir_union_test_cand_pool.jsonl"
    with open(union, "r+b") as handle:  # sparse: the published size without writing 2 GB
        handle.truncate(PUBLISHED_UNION_TEST_BYTES + 1)
    assert MBeirLayout(tree).is_published_mbeir()
