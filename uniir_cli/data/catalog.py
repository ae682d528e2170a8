"""The datasets and evaluation pairs of one data tree: M-BEIR's ten and those the tree declares.

A tree of one's own declares its datasets in `datasets.toml` at its root:

```toml
[[dataset]]
slug = "products"        # the file-name part: query/test/mbeir_products_task0_test.jsonl
name = "Products"        # shown in reports
domain = "e-commerce"
id = 12                  # the "12:7" prefix of its ids; 0-9 are M-BEIR's
recall_k = 5             # the Recall@k its pairs report (5: R@1/5/10, 10: R@10/20/50)
```

Ids hash as upstream (`data.ids`), so M-BEIR and declared datasets mix in one tree and one
union pool. Which pairs a tree is evaluated on is found from its files (`discover_pairs`):
the 16 when it holds all of M-BEIR's query files (then a missing pool or qrels file is an
error, as before), else every pair whose query file is present, each of which must have its
local pool and qrels.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from uniir_cli.data import benchmark as bm
from uniir_cli.errors import DataError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DATASETS_FILE = "datasets.toml"
SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
PAIR_NAME_RE = re.compile(r"(?P<slug>[a-z0-9]+(?:-[a-z0-9]+)*)_task(?P<task>\d+)")
MAX_DATASET_ID = 99_999  # keeps `id * 10_000_000 + n` far inside int64
RECALL_KS = (5, 10)
_QUERY_FILE_RE = re.compile(r"mbeir_(?P<pair>.+)_(?P<split>train|val|test)\.jsonl")
_FIELDS = {"slug": str, "name": str, "domain": str, "id": int, "recall_k": int}


@dataclass(frozen=True)
class Catalog:
    """M-BEIR's datasets plus a tree's declared ones."""

    datasets: tuple[bm.Dataset, ...]

    @property
    def by_slug(self) -> dict[str, bm.Dataset]:
        return {d.slug: d for d in self.datasets}

    @property
    def declared(self) -> tuple[bm.Dataset, ...]:
        """The datasets the tree adds to M-BEIR's."""
        return tuple(d for d in self.datasets if d.id not in bm.DATASET_BY_ID)

    def pair(self, slug: str, task_id: int) -> bm.EvalPair:
        """M-BEIR's own pair object for its 16, a new one (reporting the dataset's recall_k) otherwise."""
        name = f"{slug}_task{task_id}"
        if name in bm.EVAL_PAIR_BY_NAME:
            return bm.EVAL_PAIR_BY_NAME[name]
        dataset = self.by_slug[slug]
        return bm.EvalPair(dataset, task_id, dataset.recall_k)

    def pair_named(self, name: str, *, known: Sequence[str] = ()) -> bm.EvalPair:
        """The pair `mscoco_task0` / `products_task3`; a DataError naming what exists otherwise."""
        match = PAIR_NAME_RE.fullmatch(name)
        if match is None or match["slug"] not in self.by_slug or int(match["task"]) not in bm.TASKS:
            choices = ", ".join(known) if known else ", ".join(p.name for p in bm.EVAL_PAIRS)
            raise DataError(f"unknown evaluation pair {name!r}: expected <dataset>_task<N> with a dataset of the tree "
                            f"and a task of {sorted(bm.TASKS)}; this tree has {choices}")
        return self.pair(match["slug"], int(match["task"]))

    def datasets_named(self, slugs: Iterable[str], key: str) -> list[bm.Dataset]:
        """The datasets of `slugs` (from setting `key`); a ConfigError with a did-you-mean hint otherwise."""
        import difflib

        from uniir_cli.errors import ConfigError

        out = []
        for slug in slugs:
            if slug not in self.by_slug:
                close = difflib.get_close_matches(slug, list(self.by_slug), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{key}: unknown dataset {slug!r}{hint}; known: {', '.join(self.by_slug)} "
                                  f"(a dataset of your own is declared in {DATASETS_FILE} at the data root)")
            out.append(self.by_slug[slug])
        return out

    def possible_pairs(self) -> list[bm.EvalPair]:
        """M-BEIR's 16, then every task of every declared dataset, in that order."""
        return [*bm.EVAL_PAIRS, *(self.pair(d.slug, t) for d in self.declared for t in bm.TASKS)]


MBEIR_CATALOG = Catalog(bm.DATASETS)


def load_catalog(root: Path) -> Catalog:
    """M-BEIR's datasets plus those `root/datasets.toml` declares (a DataError naming the file
    and entry for a bad declaration)."""
    path = Path(root) / DATASETS_FILE
    if not path.is_file():
        return MBEIR_CATALOG
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"{path}: not valid TOML ({exc}); see `uniir data import --help` for the format") from None
    unknown = sorted(set(raw) - {"dataset"})
    if unknown:
        raise DataError(f"{path}: unknown table(s) {', '.join(unknown)}; the file holds [[dataset]] entries only")
    entries = raw.get("dataset", [])
    if not isinstance(entries, list):
        raise DataError(f"{path}: 'dataset' must be an array of tables ([[dataset]])")
    return Catalog((*bm.DATASETS, *_declared(path, entries)))


def _declared(path: Path, entries: Iterable[object]) -> list[bm.Dataset]:
    seen_ids: dict[int, str] = {d.id: f"M-BEIR's {d.name}" for d in bm.DATASETS}
    seen_slugs: dict[str, str] = {d.slug: f"M-BEIR's {d.name}" for d in bm.DATASETS}
    out = []
    for number, entry in enumerate(entries, start=1):
        where = f"{path}: dataset #{number}"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected a table with {', '.join(_FIELDS)}")
        extra = sorted(set(entry) - set(_FIELDS))
        missing = [k for k in ("slug", "name", "id") if k not in entry]
        if extra or missing:
            problem = f"unknown key(s) {', '.join(extra)}" if extra else f"missing {', '.join(missing)}"
            raise DataError(f"{where}: {problem}; keys are {', '.join(_FIELDS)} (domain and recall_k optional)")
        for key, kind in _FIELDS.items():
            if key in entry and (type(entry[key]) is not kind):
                raise DataError(f"{where}: {key} must be a {kind.__name__}, got {entry[key]!r}")
        slug, dataset_id = entry["slug"], entry["id"]
        where = f"{path}: dataset {slug!r}"
        if not SLUG_RE.fullmatch(slug):
            raise DataError(f"{where}: a slug is lower-case letters and digits, words joined by '-' (it names the files)")
        if not 0 <= dataset_id <= MAX_DATASET_ID:
            raise DataError(f"{where}: id {dataset_id} out of range 10..{MAX_DATASET_ID}")
        if dataset_id in seen_ids:
            raise DataError(f"{where}: id {dataset_id} is already {seen_ids[dataset_id]}'s (ids 0-9 are M-BEIR's); "
                            "give each dataset its own id and the same prefix in its record ids")
        if slug in seen_slugs:
            raise DataError(f"{where}: slug {slug!r} is already {seen_slugs[slug]}'s; choose another")
        recall_k = entry.get("recall_k", 5)
        if recall_k not in RECALL_KS:
            raise DataError(f"{where}: recall_k must be 5 (Recall@1/5/10) or 10 (Recall@10/20/50), got {recall_k}")
        seen_ids[dataset_id], seen_slugs[slug] = slug, slug
        out.append(bm.Dataset(dataset_id, entry["name"], slug, entry.get("domain", ""), recall_k))
    return out


def is_full_mbeir(root: Path, split: str) -> bool:
    """Whether the tree holds the query files of all 16 M-BEIR pairs for `split`."""
    return all((Path(root) / p.query_file(split)).is_file() for p in bm.EVAL_PAIRS)


def undeclared_query_files(root: Path, catalog: Catalog, split: str) -> list[tuple[Path, str]]:
    """Query files of `split` named like a pair of a dataset the catalog does not know, with that slug."""
    query_dir = Path(root) / "query" / split
    out = []
    for path in sorted(query_dir.glob(f"mbeir_*_{split}.jsonl")) if query_dir.is_dir() else []:
        match = _QUERY_FILE_RE.fullmatch(path.name)
        pair = PAIR_NAME_RE.fullmatch(match["pair"]) if match else None
        if pair is not None and pair["slug"] not in catalog.by_slug:
            out.append((path, pair["slug"]))
    return out


def discover_pairs(root: Path, catalog: Catalog, split: str) -> list[bm.EvalPair]:
    """The pairs a tree is evaluated on without `--tasks` (see the module docstring): a query
    file of an undeclared dataset, or a discovered pair without its pool or qrels, is a
    DataError naming the file and what to do."""
    root = Path(root)
    undeclared = undeclared_query_files(root, catalog, split)
    if undeclared:
        path, slug = undeclared[0]
        raise DataError(f"{path}: dataset {slug!r} is not declared; add it to {root / DATASETS_FILE} "
                        f"([[dataset]] slug = \"{slug}\", name, domain, id >= 10)")
    full = is_full_mbeir(root, split)
    pairs = [p for p in catalog.possible_pairs() if (root / p.query_file(split)).is_file()]
    for pair in pairs:
        for what, relative in (("local pool", pair.pool_file(split)), ("qrels", pair.qrels_file(split))):
            if not (root / relative).is_file():
                way = ("a full M-BEIR tree needs all 16 pairs: re-download the missing part (`uniir download mbeir`), "
                       "or choose the pairs with --tasks") if full and pair.name in bm.EVAL_PAIR_BY_NAME else \
                    "add it, or choose the pairs with --tasks"
                raise DataError(f"{root / relative}: the {what} of {pair.name} is missing; {way}")
    if not pairs:
        raise DataError(f"{root / 'query' / split}: no query files of any evaluation pair for split {split!r} "
                        f"(query/{split}/mbeir_<dataset>_task<N>_{split}.jsonl)")
    return pairs
