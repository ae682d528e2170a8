"""Shared option aliases, so every command spells a flag the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from uniir_cli.config_toml import list_presets


def comma_separated(values: Optional[list[str]]) -> Optional[list[str]]:
    """`--tasks a,b --tasks c` -> [a, b, c]: every list flag takes repetition and commas alike."""
    if values is None:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


_TOP_PRESETS = ", ".join(p for p in list_presets() if "/" not in p)

DataDir = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        envvar="UNIIR_DATA_DIR",
        help="M-BEIR data root (query/, cand_pool/, qrels/, instructions/, mbeir_images/). Env: UNIIR_DATA_DIR.",
        file_okay=False,
    ),
]
RunDir = Annotated[
    Optional[Path],
    typer.Option("--run-dir", help="Run directory (default for new runs: runs/<preset>-<timestamp>).", file_okay=False),
]
Preset = Annotated[
    Optional[str],
    typer.Option("--preset", "-p", help=f"Preset name ({_TOP_PRESETS}) or path to a .toml file."),
]
Overrides = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a config value: section.key=<TOML literal>. Repeatable."),
]
ShowConfig = Annotated[
    bool, typer.Option("--show-config", metavar="", help="Print the resolved config as TOML and exit.")
]
Force = Annotated[bool, typer.Option("--force", metavar="", help="Redo steps even when their inputs are unchanged.")]
Checkpoint = Annotated[
    Optional[Path],
    typer.Option("--checkpoint", "-c", help="uniir checkpoint folder or released UniIR .pth file."),
]
Pool = Annotated[
    Optional[str],
    typer.Option("--pool", help="Candidate pools to search: local, global (the 5.6M union) or both."),
]
Tasks = Annotated[
    Optional[list[str]],
    typer.Option("--tasks", callback=comma_separated,
                 help="Evaluate only these pairs (e.g. mscoco_task0,cirr_task7; repeat or comma-separate). "
                      "Default: M-BEIR's 16 on a full M-BEIR tree, else the pairs whose files the tree holds."),
]
Rag = Annotated[
    Optional[bool],
    typer.Option("--rag/--no-rag", metavar="", help="Also write UniRAG jsonl files (raw records + complement candidates) from the global pool."),
]
OnBadImage = Annotated[
    Optional[str],
    typer.Option("--on-bad-image", help="A missing or corrupt image: 'error' (default, names the record) or 'skip' (embed the item without it, counted in the manifest)."),
]
