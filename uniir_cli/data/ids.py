"""M-BEIR ids: `"d:n"` strings and their int64 hashes (spec section 0).

Upstream stores embeddings and faiss ids as int64 hashes of the `"d:n"` strings
(`d * 500_000 + n` for queries, `d * 10_000_000 + n` for candidates); these helpers are the
only place that converts between the two, so files stay interchangeable with upstream.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from uniir_cli.data.benchmark import DID_BASE, QID_BASE
from uniir_cli.errors import DataError

_ID_RE = re.compile(r"(\d+):(\d+)")


def is_valid_id(value: object) -> bool:
    """True for a well-formed `"d:n"` string (both parts non-negative decimal integers)."""
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def parse_id(value: object, *, where: str = "") -> tuple[int, int]:
    """`"9:6"` -> `(9, 6)`; a `DataError` (prefixed by `where`) for anything else."""
    match = _ID_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        prefix = f"{where}: " if where else ""
        raise DataError(
            f"{prefix}malformed id {value!r}: expected \"dataset_id:number\" such as \"9:6\"; "
            "fix the record or re-download the file"
        )
    return int(match.group(1)), int(match.group(2))


def dataset_of(value: str) -> int:
    """The dataset id (prefix) of a `"d:n"` id; cheap, for already validated ids."""
    return int(value.partition(":")[0])


def _hash(value: str, base: int, kind: str, where: str) -> int:
    dataset_id, number = parse_id(value, where=where)
    if number >= base:
        prefix = f"{where}: " if where else ""
        raise DataError(
            f"{prefix}{kind} {value!r} cannot be hashed: its number must be below {base:,} "
            "(upstream's int64 id scheme); renumber the records of this dataset"
        )
    return dataset_id * base + number


def hash_qid(qid: str, *, where: str = "") -> int:
    """Query id -> int64 as upstream: `dataset_id * 500_000 + n`."""
    return _hash(qid, QID_BASE, "query id", where)


def hash_did(did: str, *, where: str = "") -> int:
    """Candidate id -> int64 as upstream: `dataset_id * 10_000_000 + n`."""
    return _hash(did, DID_BASE, "candidate id", where)


def unhash_qid(value: int) -> str:
    dataset_id, number = divmod(int(value), QID_BASE)
    return f"{dataset_id}:{number}"


def unhash_did(value: int) -> str:
    dataset_id, number = divmod(int(value), DID_BASE)
    return f"{dataset_id}:{number}"


def _hash_many(ids: Iterable[str], base: int, kind: str, where: str) -> np.ndarray:
    values = [_hash(value, base, kind, where) for value in ids]
    return np.asarray(values, dtype=np.int64).reshape(len(values))


def hash_qids(qids: Iterable[str], *, where: str = "") -> np.ndarray:
    """Many query ids -> int64 array (e.g. for the `.ids.npy` files next to embeddings)."""
    return _hash_many(qids, QID_BASE, "query id", where)


def hash_dids(dids: Iterable[str], *, where: str = "") -> np.ndarray:
    """Many candidate ids -> int64 array."""
    return _hash_many(dids, DID_BASE, "candidate id", where)


def _unhash_many(values: np.ndarray | Sequence[int], base: int) -> list[str]:
    array = np.asarray(values, dtype=np.int64).ravel()
    datasets, numbers = np.divmod(array, base)
    return [f"{d}:{n}" for d, n in zip(datasets.tolist(), numbers.tolist())]


def unhash_qids(values: np.ndarray | Sequence[int]) -> list[str]:
    """int64 query hashes -> `"d:n"` strings (vectorised divmod)."""
    return _unhash_many(values, QID_BASE)


def unhash_dids(values: np.ndarray | Sequence[int]) -> list[str]:
    """int64 candidate hashes -> `"d:n"` strings (vectorised divmod)."""
    return _unhash_many(values, DID_BASE)
