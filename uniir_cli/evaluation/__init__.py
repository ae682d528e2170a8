"""Evaluation over a run directory: `evaluate` runs embed -> index -> retrieve -> score ->
report (each step skipped when its inputs are unchanged); UniRAG files; interactive search."""

from uniir_cli.lazy_face import lazy_face

__all__ = [
    "Evaluation",
    "STEPS",
    "build_tables",
    "embed_sets",
    "evaluate",
    "retrieve",
    "score",
    "search_one",
    "to_markdown",
    "write_rag",
]
__getattr__, __dir__ = lazy_face(__name__, {
    "evaluate": "pipeline",
    "Evaluation": "pipeline",
    "STEPS": "pipeline",
    "embed_sets": "embedding",
    "retrieve": "retrieval",
    "score": "scoring",
    "build_tables": "reporting",
    "to_markdown": "reporting",
    "write_rag": "unirag",
    "search_one": "interactive_search",
})
