"""`uniir data import`: an M-BEIR-layout tree from a table of images and texts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from uniir_cli.commands.boundary import with_error_boundary
from uniir_cli.errors import ConfigError

app = typer.Typer(
    help="Bring your own data into M-BEIR's layout.\n\nExample: uniir data import photos.csv --out data/photos --name photos --id 12",
    no_args_is_help=True,
)


def _fractions(text: str) -> dict[str, float]:
    """`train=0.8,val=0.1,test=0.1` -> {"train": 0.8, ...}."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        split, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError(part)
            out[split.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--split-fractions {text!r}: expected split=fraction pairs such as train=0.8,val=0.1,test=0.1") from None
    return out


@app.command("import")
@with_error_boundary
def import_(
    source: Annotated[Path, typer.Argument(help="A .csv/.tsv/.jsonl table, or a folder of images with captions.csv/.tsv/.jsonl/.txt.")],
    name: Annotated[str, typer.Option("--name", help="Dataset slug: lower-case letters and digits, words joined by '-' (names the files).")],
    dataset_id: Annotated[int, typer.Option("--id", help="Dataset id, 10..99999 (0-9 are M-BEIR's): the d of its d:n record ids.")] = 10,
    display_name: Annotated[str, typer.Option("--display-name", help="Name shown in reports (default: the slug).")] = "",
    domain: Annotated[str, typer.Option("--domain", help="Domain, e.g. news, fashion, medical.")] = "",
    image_column: Annotated[str, typer.Option("--image-column", help="Image column of a captioned-image table.")] = "image",
    text_column: Annotated[str, typer.Option("--text-column", help="Text column of a captioned-image table.")] = "text",
    split_column: Annotated[str, typer.Option("--split-column", help="Optional column with train/val/test.")] = "split",
    group_column: Annotated[str, typer.Option("--group-column", help="Optional column: rows of one group are one entity (default: rows of one image).")] = "group",
    id_column: Annotated[str, typer.Option("--id-column", help="Optional column of unique row ids (kept in src_content).")] = "id",
    split_fractions: Annotated[str, typer.Option("--split-fractions", help="Shares of the groups without a split column value.")] = "train=0.8,val=0.1,test=0.1",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split shuffle.")] = 2023,
    copy_images: Annotated[bool, typer.Option("--copy-images", metavar="", help="Copy the images into the tree (default: link to their folder).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="A new data tree (must not exist).", file_okay=False)] = None,
    into: Annotated[Optional[Path], typer.Option("--into", help="An existing data tree (M-BEIR or your own) to add the dataset to: its union pools take the new candidates.", file_okay=False)] = None,
) -> None:
    """Write an M-BEIR-layout tree from a table: captioned images (image, text columns: text -> image and
    image -> text pairs) or query/positive pairs (query_text/query_image, positive_text/positive_image: any
    of M-BEIR's 8 tasks), split train/val/test by group, with pools, qrels, instructions and datasets.toml,
    validated before it appears. --into adds the dataset to an existing tree instead (its files, lines
    in the union pools, instructions and datasets.toml), undone on any failure.

    Example: uniir data import photos.csv --out data/photos --name photos --id 12
    """
    from rich.console import Console

    from uniir_cli.data.import_source import Columns, read_source
    from uniir_cli.data.import_tree import ImportSettings, import_tree
    from uniir_cli.data.merge_tree import import_into

    if (out is None) == (into is None):
        raise ConfigError("pass --out NEW_TREE (a tree of its own) or --into TREE (add the dataset to an existing one)")
    settings = ImportSettings(name, dataset_id, display_name, domain, _fractions(split_fractions), seed, copy_images)
    settings.check()
    columns = Columns(image_column, text_column, split_column, group_column, id_column)
    rows = read_source(source, columns)
    result = import_tree(rows, out, settings) if out is not None else import_into(rows, into, settings)
    counts = ", ".join(f"{split} {n:,}" for split, n in result.queries.items())
    console = Console(soft_wrap=True, highlight=False)
    console.print(f"[green]imported[/] {name} into {result.root}: {result.candidates:,} candidates; queries {counts}", markup=True)
    console.print(f"pairs: {', '.join(result.pairs)}", markup=False)
    console.print(f"next: uniir eval --preset clip-sf-large --checkpoint checkpoints/clip-sf-large --data-dir {result.root} "
                  "--pool local", markup=False)
