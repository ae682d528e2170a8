"""`uniir data import` on real JPEGs (scikit-learn's sample images and digits): the tree it
writes validates, holds the right pairs, qrels and ids, evaluates without --tasks, and a
bad row is one error naming file and line with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.data.own_data import write_photos
from uniir_cli.app import build_app
from uniir_cli.data.import_source import read_source
from uniir_cli.data.import_tree import ImportSettings, import_tree
from uniir_cli.data.tree_check import validate_data
from uniir_cli.errors import DataError

runner = CliRunner()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_captioned_image_csv_becomes_a_validated_tree(tmp_path: Path) -> None:
    table = write_photos(tmp_path / "photos")
    result = runner.invoke(build_app(), ["data", "import", str(table), "--out", str(tmp_path / "tree"), "--name", "photos",
                                         "--id", "12", "--display-name", "Photos"])
    assert result.exit_code == 0, result.output
    tree = tmp_path / "tree"
    assert validate_data(tree).ok
    assert "id = 12" in (tree / "datasets.toml").read_text()
    text_to_image = _jsonl(tree / "query/test/mbeir_photos_task0_test.jsonl")
    image_to_text = _jsonl(tree / "query/test/mbeir_photos_task3_test.jsonl")
    pool = {c["did"]: c for c in _jsonl(tree / "cand_pool/global/mbeir_union_test_cand_pool.jsonl")}
    assert [q["query_txt"] for q in text_to_image] == ["a pagoda temple roof among trees", "a pink flower close up",
                                                       "a handwritten digit two"]
    for query in text_to_image:  # each caption's positive is its own image
        (positive,) = query["pos_cand_list"]
        assert pool[positive]["modality"] == "image" and query["qid"].startswith("12:")
    for query in image_to_text:
        (positive,) = query["pos_cand_list"]
        caption = pool[positive]["txt"]
        assert any(caption == c and query["query_img_path"].endswith(i) for i, c, _ in
                   [(r.split(",")[0], r.split(",")[1], 0) for r in table.read_text().splitlines()[1:]])
    qrels = (tree / "qrels/test/mbeir_photos_task0_test_qrels.txt").read_text().split("\n")[0].split()
    assert qrels[1:] == ["0", text_to_image[0]["pos_cand_list"][0], "1", "0"]
    assert (tree / "mbeir_images/photos_images").resolve() == table.parent.resolve()  # referenced in place
    assert len(_jsonl(tree / "query/train/mbeir_photos_train.jsonl")) == 2  # digit0 both ways

    run = tmp_path / "run"
    evaluated = runner.invoke(build_app(), ["eval", "--preset", "demo", "--data-dir", str(tree), "--run-dir", str(run),
                                            "--pool", "local"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "pairs found in the tree (2): photos_task0, photos_task3" in evaluated.output
    metrics = json.loads((run / "metrics/metrics.json").read_text())
    assert set(metrics["pairs"]["local"]) == {"photos_task0", "photos_task3"} and metrics["reported_k"]["photos_task0"] == 5
    assert "Average (2 pairs)" in (run / "report.md").read_text()


def test_copied_images_pairs_of_any_task_and_seeded_splits(tmp_path: Path) -> None:
    write_photos(tmp_path / "photos")
    rows = ["query_text,query_image,positive_text,positive_image,group"]
    rows += [f"what is shown in picture {i},,a photo number {i},,g{i}" for i in range(12)]  # text -> text
    rows += [f",digit{i % 3}.jpg,,{'china' if i % 2 else 'flower'}.jpg,h{i}" for i in range(12)]  # image -> image
    (tmp_path / "photos/pairs.csv").write_text("\n".join(rows) + "\n")
    settings = ImportSettings("pairs", 20, fractions={"train": 0.5, "val": 0.25, "test": 0.25}, seed=1, copy_images=True)
    result = import_tree(read_source(tmp_path / "photos/pairs.csv"), tmp_path / "tree", settings)
    assert result.pairs == ["pairs_task1", "pairs_task4"] and result.queries == {"train": 12, "val": 6, "test": 6}
    assert not (tmp_path / "tree/mbeir_images/pairs_images").is_symlink()
    assert (tmp_path / "tree/mbeir_images/pairs_images/china.jpg").read_bytes() == (tmp_path / "photos/china.jpg").read_bytes()
    again = import_tree(read_source(tmp_path / "photos/pairs.csv"), tmp_path / "again", settings)
    files = sorted(p.relative_to(tmp_path / "tree") for p in (tmp_path / "tree").rglob("*.*") if "mbeir_images" not in p.parts)
    assert len(files) > 10
    for name in files:  # same seed, same splits and ids
        assert (tmp_path / "tree" / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    assert again.queries == result.queries


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("china.jpg,a pagoda", "nowhere.jpg,a pagoda"), r"captions\.csv:2: image 'nowhere\.jpg' not found"),
    (lambda t: t.replace("a pink flower close up", ""), r"captions\.csv:3: empty 'text'"),
    (lambda t: t.replace("image,text,split", "image,text,split,id") .replace(",test\n", ",test,7\n"),
     r"captions\.csv:\d: id '7' is also on line 2"),
    (lambda t: t.replace("../", "").replace("flower.jpg,", "../flower.jpg,"), r"captions\.csv:3: image '\.\./flower\.jpg' leaves"),
])
def test_a_bad_row_is_named_and_nothing_is_written(tmp_path: Path, edit, message: str) -> None:
    table = write_photos(tmp_path / "photos")
    table.write_text(edit(table.read_text()))
    result = runner.invoke(build_app(), ["data", "import", str(table), "--out", str(tmp_path / "tree"), "--name", "photos"])
    assert result.exit_code == 2 and result.exception is None or isinstance(result.exception, SystemExit)
    assert __import__("re").search(message, result.output), result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # no tree, no partial folder


def test_a_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    table = write_photos(tmp_path / "photos")
    table.write_bytes(table.read_bytes().replace(b"a pink flower", b"a pink fl\xe9ur"))
    with pytest.raises(DataError, match=r"captions\.csv:3: not UTF-8"):
        read_source(table)


def test_a_folder_with_a_captions_file_and_settings_checks(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    write_photos(folder).unlink()
    (folder / "captions.txt").write_text("china.jpg\ta temple\nflower.jpg\ta flower\n")
    source = read_source(folder)
    assert [r.query.text for r in source.rows] == ["a temple", "a flower"] and source.captioned
    for settings, message in [(ImportSettings("mscoco", 12), "M-BEIR's"), (ImportSettings("photos", 9), "ids 0-9"),
                              (ImportSettings("Photos", 12), "lower-case"),
                              (ImportSettings("photos", 12, fractions={"train": 1.0}), "test split needs")]:
        with pytest.raises(Exception, match=message):
            import_tree(source, tmp_path / "tree", settings)
