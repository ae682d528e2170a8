"""A corrupt image stops `uniir eval` / `uniir embed` with the record named (also from a
DataLoader worker), or is skipped and counted over all shards, resumed ones included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from uniir_cli.app import build_app
from uniir_cli.rundir import RunDir


def _nights_queries(data: Path) -> list[dict]:
    return [json.loads(line) for line in (data / "query/test/mbeir_nights_task4_test.jsonl").read_text().splitlines()]


def _copy(synthetic_tiny: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(synthetic_tiny, data)
    return data


def test_corrupt_image_error_or_skip(synthetic_tiny: Path, tmp_path: Path) -> None:
    data = _copy(synthetic_tiny, tmp_path)
    query = _nights_queries(data)[0]
    (data / query["query_img_path"]).write_bytes(b"not a jpeg")
    app = build_app()
    args = ["eval", "--preset", "demo", "--data-dir", str(data), "--tasks", "nights_task4"]

    failed = CliRunner().invoke(app, [*args, "--run-dir", str(tmp_path / "strict")])
    assert failed.exit_code == 2
    assert f"image of {query['qid']} is unreadable" in failed.output and query["query_img_path"] in failed.output

    skipped = CliRunner().invoke(app, [*args, "--run-dir", str(tmp_path / "lenient"), "--on-bad-image", "skip"])
    assert skipped.exit_code == 0, skipped.output
    assert RunDir(tmp_path / "lenient").read_manifest()["skipped_images"]["nights_task4_test"] == 1


def test_truncated_jpeg_read_in_a_worker_is_one_line(synthetic_tiny: Path, tmp_path: Path) -> None:
    """torch wraps a worker's exception into a traceback; the user gets the one-line error."""
    data = _copy(synthetic_tiny, tmp_path)
    query = _nights_queries(data)[1]
    image = data / query["query_img_path"]
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 3])
    result = CliRunner().invoke(build_app(), [
        "embed", "--preset", "demo", "--data-dir", str(data), "--run-dir", str(tmp_path / "run"),
        "--tasks", "nights_task4", "--set", "embed.num_workers=1",
    ])
    assert result.exit_code == 2, result.output
    error_lines = [line for line in result.output.splitlines() if "error:" in line]
    assert len(error_lines) == 1, result.output
    assert f"image of {query['qid']} is unreadable: {image}" in error_lines[0]
    assert "Traceback" not in result.output and "worker process" not in result.output


def test_skipped_images_are_counted_over_resumed_shards(synthetic_tiny: Path, tmp_path: Path) -> None:
    data = _copy(synthetic_tiny, tmp_path)
    queries = _nights_queries(data)
    for query in (queries[0], queries[-1]):  # the first and the last shard of the query set
        (data / query["query_img_path"]).write_bytes(b"not a jpeg")
    run = tmp_path / "run"
    args = ["embed", "--preset", "demo", "--data-dir", str(data), "--run-dir", str(run), "--tasks", "nights_task4",
            "--on-bad-image", "skip", "--set", "embed.shard_size=1"]
    first = CliRunner().invoke(build_app(), args)
    assert first.exit_code == 0, first.output
    counts = RunDir(run).read_manifest()["skipped_images"]
    assert counts["nights_task4_test"] == 2

    # As after a kill: the last shard's marker is gone, the first shard stays finished.
    shards = sorted((run / "embeddings/nights_task4_test").glob("shard-*.done"))
    assert len(shards) == len(queries)
    kept = shards[0].stat().st_mtime_ns
    shards[-1].unlink()
    again = CliRunner().invoke(build_app(), args)
    assert again.exit_code == 0, again.output
    assert shards[-1].is_file() and shards[0].stat().st_mtime_ns == kept
    assert RunDir(run).read_manifest()["skipped_images"] == counts


def test_a_changed_or_fixed_image_is_embedded_again_and_only_its_shard(synthetic_tiny: Path, tmp_path: Path) -> None:
    data = _copy(synthetic_tiny, tmp_path)
    queries = _nights_queries(data)
    broken = data / queries[0]["query_img_path"]
    good = broken.read_bytes()
    broken.write_bytes(b"not a jpeg")
    run = tmp_path / "run"
    args = ["embed", "--preset", "demo", "--data-dir", str(data), "--run-dir", str(run), "--tasks", "nights_task4",
            "--on-bad-image", "skip", "--set", "embed.shard_size=1"]
    assert CliRunner().invoke(build_app(), args).exit_code == 0
    assert RunDir(run).read_manifest()["skipped_images"]["nights_task4_test"] == 1
    shards = sorted((run / "embeddings/nights_task4_test").glob("shard-*.done"))
    untouched = {p.name: p.stat().st_mtime_ns for p in shards[1:]}

    broken.write_bytes(good)  # the image is fixed: its query is embedded again, with the image
    again = CliRunner().invoke(build_app(), args)
    assert again.exit_code == 0, again.output
    assert RunDir(run).read_manifest()["skipped_images"]["nights_task4_test"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in shards[1:]} == untouched
    # The same vectors as a fresh run over the fixed data.
    fresh = tmp_path / "fresh"
    assert CliRunner().invoke(build_app(), [*args[:6], str(fresh), *args[7:]]).exit_code == 0
    for name in ("shard-00000.npy", "shard-00001.npy"):
        assert (run / "embeddings/nights_task4_test" / name).read_bytes() == (fresh / "embeddings/nights_task4_test" / name).read_bytes()


def _oversized_jpeg(path: Path, side: int = 14000) -> None:
    """A real JPEG whose frame header declares side x side pixels (196M, beyond PIL's limit of
    179M): PIL refuses it on open, before decoding, as it would a real photo that size."""
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2
    path.write_bytes(bytes(data))


def test_an_oversized_image_is_a_bad_image_like_any_other(synthetic_tiny: Path, tmp_path: Path) -> None:
    data = _copy(synthetic_tiny, tmp_path)
    query = _nights_queries(data)[0]
    _oversized_jpeg(data / query["query_img_path"])
    args = ["eval", "--preset", "demo", "--data-dir", str(data), "--tasks", "nights_task4"]
    failed = CliRunner().invoke(build_app(), [*args, "--run-dir", str(tmp_path / "strict")])
    assert failed.exit_code == 2 and "Traceback" not in failed.output, failed.output
    assert f"image of {query['qid']} is too large to decode safely" in failed.output
    skipped = CliRunner().invoke(build_app(), [*args, "--run-dir", str(tmp_path / "lenient"), "--on-bad-image", "skip"])
    assert skipped.exit_code == 0, skipped.output
    assert RunDir(tmp_path / "lenient").read_manifest()["skipped_images"]["nights_task4_test"] == 1
