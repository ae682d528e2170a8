"""Checks of an M-BEIR data tree (`uniir validate`): files, counts, dangling ids, instructions, images.

Each check adds its problems to a row of the report (`tree_check_report`) instead of stopping,
with each message naming a file and line or a record id.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from uniir_cli.data import benchmark as bm
from uniir_cli.data.catalog import DATASETS_FILE, is_full_mbeir, undeclared_query_files
from uniir_cli.data.ids import dataset_of, hash_did, hash_dids
from uniir_cli.data.instructions import Instructions, read_instructions
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.mbeir import (
    CandidateRecord,
    QueryRecord,
    iter_candidate_lines,
    read_qrels,
    read_queries,
)
from uniir_cli.data.pool_reader import MODALITY_CODE, DidTable, scan_pool, sort_unique
from uniir_cli.data.tree_check_report import (
    ERROR,
    NOTE,
    WARNING,
    RowReport,
    ValidationReport,
)
from uniir_cli.data.tree_check_sets import QuerySet, qrels_problems, query_sets
from uniir_cli.errors import ConfigError, DataError, location

log = logging.getLogger(__name__)

SPLIT_ORDER = ("test", "val", "train")  # report order: the required split first
IMAGE_DRAFT = (64, 64)  # decode JPEGs at reduced scale: proves the file decodes, much faster


class _Validator:
    def __init__(self, layout: MBeirLayout, pairs: list[bm.EvalPair], *, images: bool, quick: bool, max_messages: int) -> None:
        self.layout = layout
        self.pairs = pairs  # the test pairs checked
        self.images = images
        self.quick = quick
        self.max_messages = max_messages
        self.tables: dict[Path, DidTable | None] = {}
        self.image_errors: dict[Path, str | None] = {}
        self.instructions: Instructions | None = None

    def row(self, split: str, name: str, required: bool = False) -> RowReport:
        return RowReport(split, name, required, max_messages=self.max_messages)

    # -- instructions ------------------------------------------------------------------
    def check_instructions(self) -> RowReport:
        row = self.row("all", "instructions", True)
        path = self.layout.instructions_file
        if not path.is_file():
            row.error(f"{path}: instructions file not found; re-download M-BEIR (uniir download mbeir)")
            return row
        try:
            self.instructions = read_instructions(path)
        except DataError as exc:
            row.error(exc)
            return row
        covered = 0
        for pair in self.pairs:
            key = (pair.dataset.id, *pair.modalities)
            if key in self.instructions:
                covered += 1
            else:
                row.error(
                    f"{path}: no prompt for {pair.name} (key dataset {key[0]}, {key[1]!r} -> {key[2]!r}); "
                    "add a row with at least one prompt"
                )
        prompts = sum(len(v) for v in self.instructions.prompts.values())
        row.detail = f"{covered}/{len(self.pairs)} pairs covered, {len(self.instructions)} keys, {prompts} prompts"
        return row

    # -- images ------------------------------------------------------------------------
    def check_image(self, record: QueryRecord | CandidateRecord, row: RowReport) -> None:
        path = self.layout.image_path(record)
        if path is None:
            return
        row.images_checked += 1
        if path not in self.image_errors:
            try:
                self.layout.open_image(record, draft=IMAGE_DRAFT)
                self.image_errors[path] = None
            except DataError as exc:
                self.image_errors[path] = str(exc)
                row.images_bad += 1
                row.error(exc)
                return
        if self.image_errors[path] is not None:
            row.images_bad += 1
            record_id = record.qid if isinstance(record, QueryRecord) else record.did
            row.error(f"image of {record_id} is missing or unreadable: {path}")

    # -- pools -------------------------------------------------------------------------
    def pool_table(self, path: Path, row: RowReport) -> DidTable | None:
        """Hashed dids + modalities of a pool, read once per run (train sets share one pool)."""
        if path in self.tables:
            return self.tables[path]
        log.log(logging.INFO if path.stat().st_size > 2**26 else logging.DEBUG, "reading pool %s", path)
        table: DidTable | None = None
        try:
            if self.quick and not self.images:
                dids, _, codes = scan_pool(path)
                dids, (codes,) = sort_unique(dids, [codes], source=str(path))
                table = DidTable(dids, codes, source=str(path))
            else:
                table = self._parse_pool(path, row)
        except DataError as exc:
            row.error(exc)
        self.tables[path] = table
        return table

    def _parse_pool(self, path: Path, row: RowReport) -> DidTable:
        hashes, codes, lines = array("q"), array("b"), array("q")
        for number, record in iter_candidate_lines(path, on_error=row.error):
            try:
                hashes.append(hash_did(record.did, where=location(path, number)))
            except DataError as exc:
                row.error(exc)
                continue
            codes.append(MODALITY_CODE[record.modality])
            lines.append(number)
            if self.images and record.img_path:
                self.check_image(record, row)
        dids, code_arr = np.frombuffer(hashes, np.int64), np.frombuffer(codes, np.int8)
        try:
            return DidTable.from_arrays(dids, code_arr, source=str(path), where_of=lambda i: f"line {lines[i]}")
        except DataError as exc:
            row.error(exc)
            unique, first = np.unique(dids, return_index=True)
            return DidTable(unique, code_arr[first], source=str(path))

    # -- query sets --------------------------------------------------------------------
    def check_set(self, spec: QuerySet) -> RowReport:
        row = self.row(spec.split, spec.name, spec.required)
        files = {"query file": spec.queries, "pool": spec.pool}
        if spec.qrels is not None:
            files["qrels"] = spec.qrels
        missing = [(what, p) for what, p in files.items() if not p.is_file()]
        if not spec.queries.is_file() and not spec.required:  # a set the tree does not have
            row.absent = True
            return row
        mbeir = spec.pair is None or spec.pair.name in bm.EVAL_PAIR_BY_NAME
        way = "re-download M-BEIR (uniir download mbeir)" if mbeir else "add it (uniir data import writes all three)"
        for what, path in missing:
            message = f"{path}: {what} of {spec.split} {spec.name} is missing; {way}"
            row.add(ERROR if spec.required else WARNING, message)
        log.debug("checking %s %s", spec.split, spec.name)
        table = self.pool_table(spec.pool, row) if spec.pool.is_file() else None
        row.pool = len(table) if table is not None else None
        queries: list[QueryRecord] = []
        if spec.queries.is_file():
            queries = read_queries(spec.queries, unique=spec.unique, on_error=row.error)
            row.queries = len(queries)
            self._check_records(spec, queries, row)
            if table is not None:
                self._check_positives(spec, queries, table, row)
        if spec.qrels is not None and spec.qrels.is_file():
            self._check_qrels(spec, queries if spec.queries.is_file() else None, table, row)
        return row

    def _check_records(self, spec: QuerySet, queries: list[QueryRecord], row: RowReport) -> None:
        pair = spec.pair
        for q in queries:
            where = f"{location(spec.queries, q.line)}: query {q.qid}"
            if pair is not None:
                if q.dataset_id != pair.dataset.id:
                    row.error(
                        f"{where}: belongs to dataset {q.dataset_id}, but this file is {pair.dataset.name} "
                        f"({pair.dataset.id}); move the query or fix its qid"
                    )
                if q.query_modality != pair.modalities[0]:
                    row.error(
                        f"{where}: query modality {q.query_modality!r}, but {pair.name} queries are "
                        f"{pair.modalities[0]!r}; fix the record"
                    )
                if q.task_id is not None and q.task_id != pair.task_id:
                    row.error(f"{where}: task_id {q.task_id}, but this file is task {pair.task_id}; fix the record")
            if self.images and q.query_img_path:
                self.check_image(q, row)

    def _check_positives(self, spec: QuerySet, queries: list[QueryRecord], table: DidTable, row: RowReport) -> None:
        """Dangling positives and the instruction keys they imply (spec 3.2)."""
        pair = spec.pair
        flat = [did for q in queries for did in q.pos_cand_list]
        try:
            codes = table.modalities(hash_dids(flat)).tolist()
        except DataError:  # an id too large to hash: name it, check the rest one by one
            codes = []
            for did in flat:
                try:
                    codes.append(int(table.modalities(np.array([hash_did(did)], np.int64))[0]))
                except DataError as exc:
                    row.error(f"{spec.queries}: {exc}")
                    codes.append(-2)
        keys: dict[tuple[int, str, str], str] = {}
        other_missing = 0
        i = 0
        for q in queries:
            own_found: str | None = None
            has_own = False
            for did in q.pos_cand_list:
                code, i = codes[i], i + 1
                own = dataset_of(did) == q.dataset_id
                has_own = has_own or own
                if code == -1 and (own or pair is None):
                    row.error(
                        f"{location(spec.queries, q.line)}: query {q.qid}: positive {did} is not in the pool "
                        f"{spec.pool}; fix pos_cand_list or re-download the pool"
                    )
                elif code == -1:
                    other_missing += 1
                elif code >= 0 and (own or pair is None):
                    modality = bm.MODALITIES[code]
                    keys.setdefault((q.dataset_id, q.query_modality, modality), q.qid)
                    own_found = own_found or modality
            if pair is not None and not has_own:
                row.error(
                    f"{location(spec.queries, q.line)}: query {q.qid} has no positive from its own dataset "
                    f"{q.dataset_id}; its instruction cannot be chosen: fix pos_cand_list"
                )
            if own_found is None:
                continue
            if pair is not None and own_found != pair.modalities[1]:
                row.error(
                    f"{location(spec.queries, q.line)}: query {q.qid}: positive is {own_found!r}, but "
                    f"{pair.name} expects {pair.modalities[1]!r} candidates"
                )
            elif q.task_id is not None and bm.TASK_BY_MODALITIES.get((q.query_modality, own_found)) != q.task_id:
                row.error(
                    f"{location(spec.queries, q.line)}: query {q.qid}: task_id {q.task_id} does not match "
                    f"{q.query_modality!r} -> {own_found!r}; fix the record"
                )
        if other_missing:
            row.add(NOTE, (
                f"{spec.queries}: {other_missing} positive(s) from other datasets are not in the pool "
                "(OVEN/InfoSeek list each other's documents; upstream ignores them)"
            ))
        if self.instructions is not None:
            for key, qid in keys.items():
                if key not in self.instructions:
                    row.error(
                        f"{self.layout.instructions_file}: no instruction for dataset {key[0]}, {key[1]!r} -> "
                        f"{key[2]!r} (needed by query {qid} of {spec.queries}); add a row"
                    )

    def _check_qrels(
        self, spec: QuerySet, queries: list[QueryRecord] | None, table: DidTable | None, row: RowReport
    ) -> None:
        assert spec.qrels is not None
        severity = WARNING if spec.split == "train" else ERROR  # upstream training never reads train qrels
        qrels = read_qrels(spec.qrels, on_error=lambda exc: row.add(severity, str(exc)))
        row.qrels = len(qrels)
        if queries is not None:
            for problem in qrels_problems(qrels, queries, spec.queries):
                row.add(severity, str(problem))
        if spec.pair is None:
            return
        for qid, task in qrels.task_of.items():
            if task != spec.pair.task_id:
                row.error(
                    f"{location(spec.qrels, qrels.first_line[qid])}: query {qid} has task {task}, "
                    f"but this file is task {spec.pair.task_id}; fix the qrels"
                )
        if table is not None:
            own = [
                (qid, did) for qid, dids in qrels.relevant.items() for did in dids if dataset_of(did) == dataset_of(qid)
            ]
            absent = np.flatnonzero(~table.contains(hash_dids(d for _, d in own))) if own else []
            for j in absent[:3]:
                qid, did = own[int(j)]
                where = location(spec.qrels, qrels.first_line[qid])
                row.add(WARNING, f"{where}: relevant candidate {did} of query {qid} is not in the pool {spec.pool}")
            if len(absent) > 3:
                row.add(WARNING, f"{spec.qrels}: {len(absent) - 3} more relevant candidates are not in the pool")

    # -- union test pool ---------------------------------------------------------------
    def check_union_test_pool(self) -> RowReport:
        row = self.row("test", "union pool")
        path = self.layout.union_pool_file("test")
        if not path.is_file():
            row.add(WARNING, f"{path}: union test pool is missing (UniRAG output of global retrieval needs it); re-download M-BEIR")
            return row
        if self.quick:
            row.detail = f"{path.stat().st_size / 2**20:,.0f} MiB, not scanned (--quick)"
            return row
        try:
            dids, _, _ = scan_pool(path)
            dids, _ = sort_unique(dids, [], source=str(path))
        except DataError as exc:
            row.error(exc)
            return row
        row.pool = int(dids.size)
        if not dids.size:
            row.error(f"{path}: the union test pool holds no candidates (global retrieval needs them all); re-download M-BEIR")
            return row
        for pair in self.pairs:
            table = self.tables.get(self.layout.pool_file(pair, "test"))
            if table is None or not len(table):
                continue
            rows = np.searchsorted(dids, table.dids)
            present = (rows < dids.size) & (dids[np.minimum(rows, max(dids.size - 1, 0))] == table.dids)
            if not present.all():
                missing = int((~present).sum())
                row.error(f"{path}: {missing} candidate(s) of {table.source} are not in the union pool; re-download it")
        return row


def validate_data(
    root: str | Path,
    *,
    splits: Iterable[str] = SPLIT_ORDER,
    tasks: Iterable[str] = (),
    images: bool = False,
    quick: bool = False,
    max_messages: int = 20,
) -> ValidationReport:
    """Check a data tree: the pairs of `tasks`, else M-BEIR's 16 on a full M-BEIR tree and
    every pair whose query file is present (test files required, val/train where present),
    the declared datasets (datasets.toml) and query files of undeclared ones.

    `quick` reads pools with the fast scanner (no per-record checks) and skips the union test
    pool scan; `images` opens every referenced image.
    """
    splits = set(splits)
    unknown = splits - set(SPLIT_ORDER)
    if unknown:
        raise ConfigError(f"unknown split(s) {', '.join(sorted(unknown))}: choose from {', '.join(SPLIT_ORDER)}")
    layout = MBeirLayout(root)  # a root that is not M-BEIR at all, or a bad datasets.toml, is one fatal error
    catalog = layout.catalog
    wanted = tuple(s for s in SPLIT_ORDER if s in splits)
    report = ValidationReport(layout.root, wanted)
    tasks = list(tasks)
    named = {catalog.pair_named(name, known=[p.name for p in layout.pairs_present("test")]) for name in tasks}
    chosen = [p for p in catalog.possible_pairs() if p in named]

    def pairs_of(split: str) -> list[bm.EvalPair]:
        return chosen if tasks else _pairs_in_tree(layout, split)

    validator = _Validator(layout, pairs_of("test"), images=images, quick=quick, max_messages=max_messages)
    report.rows.append(validator.check_instructions())
    for split in wanted:
        pairs = pairs_of(split)
        if not tasks and split != "train":
            row = validator.row(split, "datasets")
            for path, slug in undeclared_query_files(layout.root, catalog, split):
                row.error(f"{path}: dataset {slug!r} is not declared; add it to {layout.root / DATASETS_FILE}")
            if row.issues:
                report.rows.append(row)
        for spec in query_sets(layout, split, pairs):
            report.rows.append(validator.check_set(spec))
        if split == "test":
            report.rows.append(validator.check_union_test_pool())
    return report


def _pairs_in_tree(layout: MBeirLayout, split: str) -> list[bm.EvalPair]:
    """M-BEIR's 16 (each required) on a full M-BEIR tree or one with no query file of `split`
    (so a missing test split is named file by file), plus every other pair whose query file is
    present."""
    present = layout.pairs_present(split)
    if is_full_mbeir(layout.root, split) or not present:
        return [*bm.EVAL_PAIRS, *(p for p in present if p.name not in bm.EVAL_PAIR_BY_NAME)]
    return present
