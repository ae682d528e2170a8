"""M-BEIR download: Hub and mirror sources, verified parts, safe streamed extraction, disk
checks, released checkpoints (`uniir download`)."""

from uniir_cli.lazy_face import lazy_face

__all__ = [
    "CHECKPOINTS",
    "MbeirReport",
    "Selection",
    "convert_released",
    "download_checkpoint",
    "download_mbeir",
]
__getattr__, __dir__ = lazy_face(__name__, {
    "download_mbeir": "mbeir",
    "download_checkpoint": "checkpoint",
    "convert_released": "checkpoint",
    "CHECKPOINTS": "checkpoint",
    "Selection": "selection",
    "MbeirReport": "files",
})
