"""The M-BEIR benchmark definition: datasets, tasks and the 16 evaluation pairs.

Written exactly once in the code base (spec sections 0 and 2.4); everything else imports
these constants.
"""

from __future__ import annotations

from dataclasses import dataclass

TEXT, IMAGE, IMAGE_TEXT = "text", "image", "image,text"
MODALITIES: tuple[str, ...] = (TEXT, IMAGE, IMAGE_TEXT)


@dataclass(frozen=True)
class Dataset:
    id: int
    name: str  # display name as the paper prints it
    slug: str  # lower-case file-name part
    domain: str
    recall_k: int = 5  # the Recall@k a declared dataset's pairs report (M-BEIR's pairs fix their own)


DATASETS: tuple[Dataset, ...] = (
    Dataset(0, "VisualNews", "visualnews", "news"),
    Dataset(1, "Fashion200K", "fashion200k", "fashion"),
    Dataset(2, "WebQA", "webqa", "wiki"),
    Dataset(3, "EDIS", "edis", "news"),
    Dataset(4, "NIGHTS", "nights", "common"),
    Dataset(5, "OVEN", "oven", "wiki"),
    Dataset(6, "INFOSEEK", "infoseek", "wiki"),
    Dataset(7, "FashionIQ", "fashioniq", "fashion"),
    Dataset(8, "CIRR", "cirr", "common"),
    Dataset(9, "MSCOCO", "mscoco", "common"),
)
DATASET_BY_SLUG = {d.slug: d for d in DATASETS}
DATASET_BY_ID = {d.id: d for d in DATASETS}

# Code task ids (as in the files) -> (query modality, candidate modality). There is no 5.
TASKS: dict[int, tuple[str, str]] = {
    0: (TEXT, IMAGE),
    1: (TEXT, TEXT),
    2: (TEXT, IMAGE_TEXT),
    3: (IMAGE, TEXT),
    4: (IMAGE, IMAGE),
    6: (IMAGE_TEXT, TEXT),
    7: (IMAGE_TEXT, IMAGE),
    8: (IMAGE_TEXT, IMAGE_TEXT),
}
TASK_BY_MODALITIES = {pair: task for task, pair in TASKS.items()}
# Paper task numbers 1..8 for code ids.
PAPER_TASK = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 6: 6, 7: 7, 8: 8}


def task_name(task_id: int) -> str:
    """`"text -> image"`: the task string of upstream TSVs."""
    query, cand = TASKS[task_id]
    return f"{query} -> {cand}"


@dataclass(frozen=True)
class EvalPair:
    """One of the 16 (dataset, task) evaluation pairs."""

    dataset: Dataset
    task_id: int
    reported_k: int  # Recall@k that the paper reports for this pair

    @property
    def name(self) -> str:
        """`"mscoco_task0"`: upstream's middle name of the query, pool and qrels files."""
        return f"{self.dataset.slug}_task{self.task_id}"

    @property
    def recall_ks(self) -> tuple[int, int, int]:
        """The Recall@k values upstream computes (and so the search depth, the last one)."""
        return (10, 20, 50) if self.reported_k == 10 else (1, 5, 10)

    @property
    def depth(self) -> int:
        return self.recall_ks[-1]

    @property
    def modalities(self) -> tuple[str, str]:
        return TASKS[self.task_id]

    def pool_name(self, split: str) -> str:
        """Local pool name; MSCOCO keeps separate val and test pools."""
        if self.dataset.slug == "mscoco":
            return f"{self.name}_{split}"
        return self.name

    def query_file(self, split: str) -> str:
        return f"query/{split}/mbeir_{self.name}_{split}.jsonl"

    def pool_file(self, split: str) -> str:
        return f"cand_pool/local/mbeir_{self.pool_name(split)}_cand_pool.jsonl"

    def qrels_file(self, split: str) -> str:
        return f"qrels/{split}/mbeir_{self.name}_{split}_qrels.txt"


def _pair(slug: str, task_id: int, reported_k: int = 5) -> EvalPair:
    return EvalPair(DATASET_BY_SLUG[slug], task_id, reported_k)


# Upstream config / TSV order (dataset_order 1..16).
EVAL_PAIRS: tuple[EvalPair, ...] = (
    _pair("visualnews", 0),
    _pair("mscoco", 0),
    _pair("fashion200k", 0, 10),
    _pair("webqa", 1),
    _pair("edis", 2),
    _pair("webqa", 2),
    _pair("visualnews", 3),
    _pair("mscoco", 3),
    _pair("fashion200k", 3, 10),
    _pair("nights", 4),
    _pair("oven", 6),
    _pair("infoseek", 6),
    _pair("fashioniq", 7, 10),
    _pair("cirr", 7),
    _pair("oven", 8),
    _pair("infoseek", 8),
)
EVAL_PAIR_BY_NAME = {p.name: p for p in EVAL_PAIRS}

SPLITS = ("train", "val", "test")
UNION_TRAIN_QUERIES = "query/union_train/mbeir_union_up_train.jsonl"
UNION_VAL_QUERIES = "query/union_val/mbeir_union_val.jsonl"
INSTRUCTIONS_FILE = "instructions/query_instructions.tsv"
IMAGES_DIR = "mbeir_images"


def train_query_file(dataset: Dataset) -> str:
    return f"query/train/mbeir_{dataset.slug}_train.jsonl"


def train_qrels_file(dataset: Dataset) -> str:
    return f"qrels/train/mbeir_{dataset.slug}_train_qrels.txt"


def union_pool_file(split: str) -> str:
    """`cand_pool/global/mbeir_union_{train,val,test}_cand_pool.jsonl`."""
    return f"cand_pool/global/mbeir_union_{split}_cand_pool.jsonl"


# Hashing of "d:n" ids to int64, as upstream (spec section 0).
QID_BASE = 500_000
DID_BASE = 10_000_000
