"""Datasets declared by a tree (datasets.toml) and the pairs found in it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from uniir_cli.data.benchmark import EVAL_PAIRS
from uniir_cli.data.catalog import MBEIR_CATALOG, discover_pairs, load_catalog
from uniir_cli.errors import DataError


def _declare(root: Path, body: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "datasets.toml").write_text(body)
    return root


def test_a_declared_dataset_joins_mbeir_with_its_own_pairs(tmp_path: Path) -> None:
    catalog = load_catalog(_declare(tmp_path, '[[dataset]]\nslug = "products"\nname = "Products"\nid = 12\nrecall_k = 10\n'))
    assert catalog.by_slug["products"].id == 12 and len(catalog.datasets) == 11
    pair = catalog.pair_named("products_task0")
    assert pair.pool_file("test") == "cand_pool/local/mbeir_products_task0_cand_pool.jsonl" and pair.recall_ks == (10, 20, 50)
    assert catalog.pair_named("mscoco_task0") is EVAL_PAIRS[1]
    with pytest.raises(DataError, match="unknown evaluation pair 'products_task5'"):
        catalog.pair_named("products_task5")
    assert load_catalog(tmp_path / "nowhere") is MBEIR_CATALOG


@pytest.mark.parametrize(("body", "message"), [
    ('[[dataset]]\nslug = "a"\nname = "A"\nid = 9\n', "id 9 is already M-BEIR's MSCOCO's"),
    ('[[dataset]]\nslug = "a"\nname = "A"\nid = 12\n[[dataset]]\nslug = "b"\nname = "B"\nid = 12\n', "dataset 'b': id 12 is already a's"),
    ('[[dataset]]\nslug = "cirr"\nname = "A"\nid = 12\n', "slug 'cirr' is already M-BEIR's CIRR's"),
    ('[[dataset]]\nslug = "My_Set"\nname = "A"\nid = 12\n', "a slug is lower-case"),
    ('[[dataset]]\nslug = "a"\nname = "A"\nid = "12"\n', "id must be a int"),
    ('[[dataset]]\nslug = "a"\nname = "A"\nid = 12\ncolour = 1\n', "unknown key\\(s\\) colour"),
    ('[[dataset]]\nslug = "a"\nid = 12\n', "missing name"),
    ('[[dataset]]\nslug = "a"\nname = "A"\nid = 12\nrecall_k = 3\n', "recall_k must be 5"),
    ("[[dataset]\n", "not valid TOML"),
])
def test_a_bad_declaration_names_the_file_and_entry(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        load_catalog(_declare(tmp_path, body))
    assert str(tmp_path / "datasets.toml") in str(info.value)


def test_pairs_found_in_a_partial_tree(synthetic_tiny: Path, tmp_path: Path) -> None:
    assert discover_pairs(synthetic_tiny, MBEIR_CATALOG, "test") == list(EVAL_PAIRS)  # full M-BEIR: the 16
    data = tmp_path / "data"
    shutil.copytree(synthetic_tiny, data)
    kept = {"mscoco_task0", "cirr_task7", "nights_task4", "webqa_task1"}
    for pair in EVAL_PAIRS:
        if pair.name not in kept:
            (data / pair.query_file("test")).unlink()
    assert [p.name for p in discover_pairs(data, MBEIR_CATALOG, "test")] == ["mscoco_task0", "webqa_task1", "nights_task4", "cirr_task7"]
    (data / EVAL_PAIRS[1].qrels_file("test")).unlink()
    with pytest.raises(DataError, match="mbeir_mscoco_task0_test_qrels.txt: the qrels of mscoco_task0 is missing; add it, or"):
        discover_pairs(data, MBEIR_CATALOG, "test")
    (data / "query/test/mbeir_products_task0_test.jsonl").write_text("")
    with pytest.raises(DataError, match="mbeir_products_task0_test.jsonl: dataset 'products' is not declared; add it to"):
        discover_pairs(data, MBEIR_CATALOG, "test")
