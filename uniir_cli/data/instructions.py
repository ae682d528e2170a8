"""Query instructions: the tsv, the choice of a prompt, and upstream's text normalisation.

Spec sections 3.1-3.3. Text normalisation is reproduced character for character because the
released checkpoints were trained on exactly these strings. Instructions go to queries only.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uniir_cli.data.benchmark import MODALITIES
from uniir_cli.data.ids import dataset_of
from uniir_cli.data.mbeir import QueryRecord
from uniir_cli.errors import ConfigError, DataError, location

if TYPE_CHECKING:
    from uniir_cli.config import Config
    from uniir_cli.data.layout import MBeirLayout

log = logging.getLogger(__name__)

# (dataset_id, query_modality, cand_modality), as upstream's "d, qm, cm" lookup string.
InstructionKey = tuple[int, str, str]
DEFAULT_SEED = 2023  # upstream seeds python/numpy/torch with 2023 + rank


def format_string(text: str | None) -> str:
    """Upstream's normaliser: drop `\\r`, strip spaces then `"`, capitalise the first char, end with a stop."""
    if text is None:
        return ""
    text = text.replace("\r", "").strip().strip('"')
    if text:
        text = text[0].upper() + text[1:]
        if text[-1] not in ".?!":
            text += "."
    return text


def query_text(query_txt: str | None, prompt: str | None) -> str:
    """The text a query is embedded with; `prompt=None` means no instruction."""
    if prompt is None:
        return format_string(query_txt)
    return format_string(format_string(prompt) + " " + (query_txt or ""))


@dataclass(frozen=True)
class QueryText:
    """A query's raw text and instruction, kept apart for the models that place the
    instruction themselves (an MLLM prompt may put it in a system turn or leave it out);
    `joined` is what UniIR's models embed."""

    text: str | None
    instruction: str | None  # None: no instruction

    @property
    def joined(self) -> str:
        return query_text(self.text, self.instruction)

    @property
    def bare(self) -> str:
        """The text normalised without the instruction."""
        return format_string(self.text)

    @property
    def normalised_instruction(self) -> str | None:
        return format_string(self.instruction) if self.instruction else None


def candidate_text(txt: str | None) -> str:
    """The text a candidate is embedded with (candidates never get an instruction)."""
    return format_string(txt or "")


@dataclass(frozen=True)
class Instructions:
    """Prompts per key, read from `instructions/query_instructions.tsv`."""

    prompts: Mapping[InstructionKey, tuple[str, ...]] = field(default_factory=dict)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.prompts)

    def __contains__(self, key: object) -> bool:
        return bool(self.prompts.get(key))  # type: ignore[call-overload]

    def get(self, key: InstructionKey) -> tuple[str, ...]:
        return self.prompts.get(key, ())

    def require(self, key: InstructionKey) -> tuple[str, ...]:
        """The prompts of `key`, or a `DataError` naming the key and the file."""
        prompts = self.prompts.get(key, ())
        if not prompts:
            source = self.path or "the instructions"
            raise DataError(
                f"{source}: no instruction for dataset {key[0]}, query modality {key[1]!r}, candidate "
                f"modality {key[2]!r}; add a row `{key[1]}\\t{key[2]}\\t<name>\\t{key[0]}\\t<prompt>` "
                "or run without instructions (mode none)"
            )
        return prompts


def read_instructions(path: str | Path) -> Instructions:
    """Parse the tsv by column position (0 qm, 1 cm, 2 name, 3 dataset id, 4.. prompts)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: instructions file not found; re-download M-BEIR (uniir download mbeir)") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc}); re-download the file") from None
    prompts: dict[InstructionKey, tuple[str, ...]] = {}
    lines: dict[InstructionKey, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if number == 1 or not line.strip():
            continue
        cells = line.split("\t")
        where = location(path, number)
        if len(cells) < 4:
            raise DataError(
                f"{where}: {len(cells)} tab-separated columns, expected at least 4 "
                "(query_modality, cand_modality, dataset, dataset_id, prompts...); fix the row"
            )
        query_modality, cand_modality = cells[0].strip(), cells[1].strip()
        for modality in (query_modality, cand_modality):
            if modality not in MODALITIES:
                expected = ", ".join(MODALITIES)
                raise DataError(f"{where}: unknown modality {modality!r} (expected one of {expected}); fix the row")
        try:
            dataset_id = int(cells[3].strip())
        except ValueError:
            raise DataError(f"{where}: dataset_id {cells[3].strip()!r} (column 4) is not an integer; fix the row") from None
        key = (dataset_id, query_modality, cand_modality)
        if key in lines:
            log.warning("%s: key %s repeats line %d; the later row wins (as upstream)", where, key, lines[key])
        prompts[key] = tuple(cell for cell in cells[4:] if cell.strip())
        lines[key] = number
    return Instructions(prompts, path)


@dataclass(frozen=True)
class InstructionMode:
    """How a prompt is chosen: `random` (seeded), `first`, `index=N`, or `none` (no instruction)."""

    kind: str = "random"
    index: int = 0

    @classmethod
    def parse(cls, text: str | InstructionMode) -> InstructionMode:
        if isinstance(text, InstructionMode):
            return text
        value = text.strip().lower()
        if value in ("random", "first", "none"):
            return cls(value)
        if value.startswith("index="):
            number = value.removeprefix("index=")
            if number.isdigit():
                return cls("index", int(number))
        raise ConfigError(f"instruction mode {text!r} is not one of random, first, index=N (N >= 0), none")

    def __str__(self) -> str:
        return f"index={self.index}" if self.kind == "index" else self.kind


class PromptPicker:
    """Chooses one prompt per query.

    `random` is seeded. Called with an `item_id` (the qid), the choice depends only on
    (seed, qid), so sharded or resumed embedding runs agree; without one, it draws from one
    seeded `random.Random` in call order, as upstream's single-process `random.choice`.
    """

    def __init__(
        self, instructions: Instructions | None, mode: str | InstructionMode = "random", seed: int = DEFAULT_SEED
    ) -> None:
        self.mode = InstructionMode.parse(mode)
        if instructions is None and self.mode.kind != "none":
            raise ConfigError(f"instruction mode {self.mode} needs the instructions tsv; use mode none to run without")
        self.instructions = instructions or Instructions()
        self.seed = seed
        self._rng = random.Random(seed)

    @property
    def enabled(self) -> bool:
        return self.mode.kind != "none"

    def pick(self, key: InstructionKey, item_id: str | None = None) -> str | None:
        if not self.enabled:
            return None
        prompts = self.instructions.require(key)
        if self.mode.kind == "first":
            return prompts[0]
        if self.mode.kind == "index":
            if self.mode.index >= len(prompts):
                raise DataError(
                    f"{self.instructions.path or 'instructions'}: instruction index {self.mode.index} is out of range "
                    f"for dataset {key[0]}, {key[1]!r} -> {key[2]!r}, which has {len(prompts)} prompt(s); "
                    "choose a smaller index or mode first/random"
                )
            return prompts[self.mode.index]
        if item_id is None:
            return self._rng.choice(prompts)
        digest = hashlib.blake2b(f"{self.seed}:{item_id}".encode(), digest_size=8).digest()
        return prompts[int.from_bytes(digest, "little") % len(prompts)]

    def query_text(self, query: QueryRecord, cand_modality: str, *, per_item: bool = True) -> QueryText:
        """The query's text with the instruction of (query dataset, modality, `cand_modality`)."""
        if not self.enabled:
            return QueryText(query.query_txt, None)
        return QueryText(query.query_txt, self.pick(instruction_key(query, cand_modality), query.qid if per_item else None))

    def query_texts(
        self, queries: Sequence[QueryRecord], cand_modalities: Sequence[str], *, per_item: bool = True
    ) -> list[QueryText]:
        return [self.query_text(q, m, per_item=per_item) for q, m in zip(queries, cand_modalities, strict=True)]


def instruction_key(query: QueryRecord, cand_modality: str) -> InstructionKey:
    """(query dataset, query modality, candidate modality): eval takes the candidate modality
    from `eval_cand_modalities`, training from the positive it trains on (`pool.modality(did)`)."""
    return (query.dataset_id, query.query_modality, cand_modality)


def own_positives(query: QueryRecord) -> list[str]:
    """Positives from the query's own dataset (OVEN/InfoSeek list each other's documents)."""
    own = query.dataset_id
    return [did for did in query.pos_cand_list if dataset_of(did) == own]


def eval_cand_modalities(queries: Sequence[QueryRecord], pool: Any, *, where: str = "") -> list[str]:
    """Eval-mode candidate modality per query: that of an own-dataset positive found in `pool`.

    `pool` is a `PoolReader`/`DidTable` (anything with `modalities(dids)` returning codes, -1
    when absent) or a mapping did -> `CandidateRecord` or modality string. Errors name the
    query's `file:line`, or `where` for records that were not read from a file.
    """
    candidates = [own_positives(q) for q in queries]
    if hasattr(pool, "modalities"):
        firsts = [c[0] if c else "0:0" for c in candidates]
        codes = pool.modalities(firsts).tolist() if firsts else []
        found = [MODALITIES[code] if code >= 0 and c else None for code, c in zip(codes, candidates)]
        lookup = pool.modality
    else:
        found = [None] * len(queries)

        def lookup(did: str) -> str | None:
            value = pool.get(did)
            return value if value is None or isinstance(value, str) else value.modality

    result: list[str] = []
    for query, own, modality in zip(queries, candidates, found):
        for did in own if modality is None else ():
            modality = lookup(did)
            if modality is not None:
                break
        if modality is None:
            source = query.where or where  # file:line when the record came from a reader
            prefix = f"{source}: " if source else ""
            raise DataError(
                f"{prefix}query {query.qid}: none of its positives from dataset {query.dataset_id} "
                f"({', '.join(own) or 'none listed'}) is in the candidate pool, so the instruction's "
                "candidate modality is unknown; check pos_cand_list or use the matching pool"
            )
        result.append(modality)
    return result


def prompt_picker(config: Config, layout: MBeirLayout) -> PromptPicker:
    """The instruction chooser of `data.instruction_mode` (reads the tsv unless mode is none)."""
    mode = config.data.instruction_mode
    instructions = None
    if mode != "none":
        instructions = read_instructions(layout.require(layout.path(config.data.instructions), "instructions tsv"))
    return PromptPicker(instructions, mode, seed=config.run.seed)
