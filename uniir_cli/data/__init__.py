"""M-BEIR data: benchmark constants, ids, layout, records, instructions, loaders, pool
readers, training pairs, data-tree checks (`uniir validate`) and the synthetic M-BEIR."""

from uniir_cli.lazy_face import lazy_face

__all__ = [
    "EVAL_PAIRS",
    "MBeirLayout",
    "PoolReader",
    "eval_pairs",
    "prompt_picker",
    "read_instructions",
    "read_pool",
    "read_qrels",
    "read_queries",
    "validate_data",
]
__getattr__, __dir__ = lazy_face(__name__, {
    "EVAL_PAIRS": "benchmark",
    "MBeirLayout": "layout",
    "PoolReader": "pool_reader",
    "eval_pairs": "eval_sets",
    "prompt_picker": "instructions",
    "read_instructions": "instructions",
    "read_pool": "mbeir",
    "read_qrels": "mbeir",
    "read_queries": "mbeir",
    "validate_data": "tree_check",
})
