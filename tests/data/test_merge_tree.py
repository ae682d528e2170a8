"""`uniir data import --into`: a dataset added to an existing tree (the synthetic M-BEIR) is
exactly the standalone import's files plus its lines appended to the tree's shared files;
a refused or failed merge leaves the tree byte-identical, and a merge killed half-way is
undone and redone by the next one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.data.own_data import write_photos
from tests.file_tree import file_tree
from uniir_cli.app import build_app
from uniir_cli.data import merge_tree
from uniir_cli.data.import_source import Columns, read_source
from uniir_cli.data.import_tree import ImportSettings
from uniir_cli.data.merge_tree import SHARED_FILES, import_into

runner = CliRunner()


def _import(*args: str) -> str:
    result = runner.invoke(build_app(), ["data", "import", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def trees(synthetic_tiny: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the synthetic M-BEIR, and the photos table."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_tiny, data)
    return data, write_photos(tmp_path / "photos")


def test_into_adds_the_standalone_files_and_appends_the_shared_lines(trees: tuple[Path, Path], tmp_path: Path) -> None:
    data, table = trees
    before = file_tree(data)
    _import(str(table), "--out", str(tmp_path / "own"), "--name", "photos", "--id", "12")
    own = file_tree(tmp_path / "own")
    output = _import(str(table), "--into", str(data), "--name", "photos", "--id", "12")
    assert f"imported photos into {data}" in output and "pairs: photos_task0, photos_task3" in output
    after = file_tree(data)
    for relative, content in own.items():
        if relative in SHARED_FILES and relative in before:
            added = content.split(b"\n", 1)[1] if relative == "instructions/query_instructions.tsv" else content
            original = before[relative]
            assert after[relative] == original + (b"" if original.endswith(b"\n") else b"\n") + added, relative
        else:
            assert after[relative] == content, relative
    assert {r: c for r, c in after.items() if r not in own} == {r: c for r, c in before.items() if r not in own}
    assert not any(name.startswith(".uniir-import") for name in os.listdir(data))


def test_a_taken_name_or_id_leaves_the_tree_as_it_was(trees: tuple[Path, Path]) -> None:
    data, table = trees
    _import(str(table), "--into", str(data), "--name", "photos", "--id", "12")
    before = file_tree(data)
    for name, dataset_id in (("photos", 13), ("pictures", 12)):
        result = runner.invoke(build_app(), ["data", "import", str(table), "--into", str(data), "--name", name, "--id", str(dataset_id)])
        assert result.exit_code == 2
        assert "already has dataset 'photos' (id 12, declared in" in result.output and "choose another --name and --id" in result.output
    result = runner.invoke(build_app(), ["data", "import", str(table), "--name", "pictures"])
    assert result.exit_code == 2 and "pass --out NEW_TREE" in result.output
    assert file_tree(data) == before


def _settings() -> ImportSettings:
    return ImportSettings("photos", 12, "Photos")


def _failing_swap(fail_at: int | str, error: BaseException):
    """`merge_tree._swap_in` that raises `error` at its `fail_at`-th call, or at the file
    `fail_at` names (fault injection)."""
    real, calls = merge_tree._swap_in, []

    def swap(tree: Path, staging: Path, relative: str) -> None:
        calls.append(relative)
        if fail_at in (len(calls), relative):
            raise error
        real(tree, staging, relative)

    return swap


@pytest.mark.parametrize("fail_at", [1, 4, "cand_pool/global/mbeir_union_test_cand_pool.jsonl", "datasets.toml"])
def test_a_failed_merge_is_undone(trees: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, fail_at: int | str) -> None:
    data, table = trees
    before = file_tree(data)
    monkeypatch.setattr(merge_tree, "_swap_in", _failing_swap(fail_at, OSError("disk gone")))
    with pytest.raises(OSError, match="disk gone"):
        import_into(read_source(table, Columns()), data, _settings())
    assert file_tree(data) == before


def test_a_merge_killed_half_way_is_undone_and_redone_by_the_next(trees: tuple[Path, Path], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    data, table = trees
    clean = tmp_path / "clean"
    shutil.copytree(data, clean, symlinks=True)
    import_into(read_source(table, Columns()), clean, _settings())

    # A kill: the swap stops after 5 renames and nothing is cleaned up.
    with monkeypatch.context() as patch:
        patch.setattr(merge_tree, "_swap_in", _failing_swap(6, KeyboardInterrupt()))
        patch.setattr(merge_tree, "undo_merge", lambda tree, staging: None)
        with pytest.raises(KeyboardInterrupt):
            import_into(read_source(table, Columns()), data, _settings())
    assert (data / ".uniir-import-photos" / "journal.json").is_file()
    assert (data / "cand_pool/local/mbeir_photos_task0_cand_pool.jsonl").is_file()  # half merged

    import_into(read_source(table, Columns()), data, _settings())
    assert file_tree(data) == file_tree(clean)


def test_a_tree_whose_images_are_a_link_to_another_folder(trees: tuple[Path, Path], tmp_path: Path) -> None:
    data, table = trees
    elsewhere = tmp_path / "disk2" / "mbeir_images"
    elsewhere.parent.mkdir()
    shutil.move(data / "mbeir_images", elsewhere)
    (data / "mbeir_images").symlink_to(elsewhere, target_is_directory=True)
    _import(str(table), "--into", str(data), "--name", "photos", "--id", "12")
    link = elsewhere / "photos_images"
    assert link.is_symlink() and link.resolve() == table.parent.resolve()
    assert (data / "mbeir_images" / "photos_images" / "china.jpg").is_file()
