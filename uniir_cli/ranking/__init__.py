"""Ranking primitives shared by evaluation and training: exact and faiss k-nearest-neighbour
search over vector blocks (`knn`) and the metrics of ranked lists (`metrics`)."""

from uniir_cli.lazy_face import lazy_face

__all__ = [
    "PoolBlock",
    "Relevance",
    "build_faiss_index",
    "exact_search",
    "faiss_search",
    "normalize_rows",
    "paper_average",
    "summarize",
]
__getattr__, __dir__ = lazy_face(__name__, {
    "PoolBlock": "knn",
    "exact_search": "knn",
    "normalize_rows": "knn",
    "build_faiss_index": "knn",
    "faiss_search": "knn",
    "Relevance": "metrics",
    "summarize": "metrics",
    "paper_average": "metrics",
})
