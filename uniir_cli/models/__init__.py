"""Retrievers: one interface (`base.Retriever`) for every model, registered by name.

Importing this package is cheap; torch, open_clip and transformers are imported by the
modules that need them. `BUILTIN_MODELS` is the catalogue of the families that ship with
uniir: registry name -> the module that defines and registers it (with `@register_model`
and `@register_upstream`). `uniir_cli.registry` imports a module from it only when one of
its models is used, so listing the names imports no model code; a new family adds its
names here and touches no other module.
"""

from uniir_cli.lazy_face import lazy_face

BUILTIN_MODELS: dict[str, str] = {
    "clip_sf": "uniir_cli.models.clip_fusion",
    "clip_ff": "uniir_cli.models.clip_fusion",
    "blip_sf": "uniir_cli.models.blip.model",
    "blip_ff": "uniir_cli.models.blip.model",
    "mllm": "uniir_cli.models.mllm.model",
}

__all__ = ["BUILTIN_MODELS", "EncoderBatch", "Processor", "Retriever", "encode_items"]
__getattr__, __dir__ = lazy_face(__name__, {
    "EncoderBatch": "base",
    "Processor": "base",
    "Retriever": "base",
    "encode_items": "encode",
})
