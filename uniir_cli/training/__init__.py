"""Training: the one Accelerate loop (`train` opens the run, `fit` is the loop), Recall on
the val split during training (`val_recall`), the append-only metrics logs."""

from uniir_cli.lazy_face import lazy_face

__all__ = [
    "append_record",
    "fit",
    "log_val_recall",
    "read_metrics_log",
    "train",
]
__getattr__, __dir__ = lazy_face(__name__, {
    "train": "loop",
    "fit": "loop",
    "log_val_recall": "val_recall",
    "append_record": "metrics_log",
    "read_metrics_log": "metrics_log",
})
