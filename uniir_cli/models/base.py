"""The one retriever interface: CLIP-SF/FF and BLIP-SF/FF now, MLLM embedders later.

Encoding is split in two so that the weight-free, CPU-heavy half of preprocessing runs in
DataLoader workers:

* a `Processor` (picklable, holds no weights) turns raw items - `(text or None, PIL image or
  None)`, the instruction already merged into the text by the data layer as UniIR does, and
  for queries the `QueryText` with text and instruction apart - into tensors: `process` one
  item inside a worker, `collate` a list of them into an `EncoderBatch`;
* a `Retriever` (an `nn.Module`) turns an `EncoderBatch` into one vector per item
  (`encode`), and computes the training loss (`loss`, or `forward` with positives so that a
  DDP/Accelerate wrapper sees exactly one forward per step) from the embeddings
  (`embedding_loss`) and whatever else it needs of the batches (`loss_targets`). A model may also define
  `optimizer_param_groups(lr=, weight_decay=)` when its recipe groups parameters its own way.

A checkpoint folder describes itself: `model.json` (registry name + constructor kwargs +
uniir version) next to `model.safetensors`; see `checkpoint_io`.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Union

import torch
from torch import nn

from uniir_cli.errors import ConfigError, DataError, ModelError

if TYPE_CHECKING:
    from PIL import Image

    from uniir_cli.data.instructions import QueryText
    from uniir_cli.models.losses import ContrastiveOutput

RawItem = tuple[Optional[str], Optional["Image.Image"]]
PathLike = Union[str, Path]


@dataclass
class EncoderBatch:
    """Model-ready tensors for B items.

    `has_text` / `has_image` ([B] bool, always present) say which modalities each item
    has; `tensors` holds the model-specific inputs (their layout is the processor's and the
    model's business, e.g. CLIP-SF keeps only the present texts and images plus index maps).
    """

    has_text: torch.Tensor
    has_image: torch.Tensor
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.has_text.shape[0])

    def to(self, device: Union[str, torch.device], non_blocking: bool = False) -> EncoderBatch:
        return EncoderBatch(
            self.has_text.to(device, non_blocking=non_blocking),
            self.has_image.to(device, non_blocking=non_blocking),
            {k: v.to(device, non_blocking=non_blocking) for k, v in self.tensors.items()},
        )

    def pin_memory(self) -> EncoderBatch:
        """Called by `DataLoader(pin_memory=True)` for custom batch types."""
        return EncoderBatch(
            self.has_text.pin_memory(),
            self.has_image.pin_memory(),
            {k: v.pin_memory() for k, v in self.tensors.items()},
        )


def has_content(text: Optional[str], image: Optional[Image.Image]) -> tuple[bool, bool]:
    """Which modalities an item has. An empty string counts as no text, as upstream (which
    encodes a missing text as "" with mask 0); an item with neither is a data error."""
    has_text = text is not None and text != ""
    has_image = image is not None
    if not (has_text or has_image):
        raise DataError(
            "an item has neither text nor image; every query and candidate needs at least one "
            "(check the modality and txt/img_path fields of the record)"
        )
    return has_text, has_image


class Processor(ABC):
    """Raw items -> tensors. Picklable and weight-free, so DataLoader workers can run it."""

    # Batches pad to their longest item (MLLM prompts), so the embed step groups items by length.
    pads_to_longest: ClassVar[bool] = False

    @abstractmethod
    def process(self, text: Optional[str], image: Optional[Image.Image], query: Optional[QueryText] = None) -> dict[str, Any]:
        """One item -> a dict of tensors/flags (runs in a worker). `text` is what UniIR
        embeds; `query` is given for queries only (an MLLM prompt renders queries its way)."""

    @abstractmethod
    def collate(self, items: Sequence[dict[str, Any]]) -> EncoderBatch:
        """Processed items -> one batch (the DataLoader's `collate_fn`)."""

    def __call__(self, items: Iterable[RawItem]) -> EncoderBatch:
        return self.collate([self.process(text, image) for text, image in items])


class Retriever(nn.Module, ABC):
    """Bi-encoder: one shared encoder maps any (text, image) item to one vector."""

    registry_name: ClassVar[str] = ""  # set by @register_model

    def __init__(self, **config: Any) -> None:
        super().__init__()
        # Constructor kwargs, JSON-serialisable: written to model.json so the folder rebuilds
        # the same architecture without a preset.
        self.config: dict[str, Any] = dict(config)
        # Where the weights came from (e.g. a converted upstream .pth); saved in model.json.
        self.provenance: dict[str, Any] = {}

    # -- what every model provides ------------------------------------------------------
    @property
    @abstractmethod
    def embedding_dim(self) -> int:
        """Length of the vectors `encode` returns."""

    @property
    @abstractmethod
    def processor(self) -> Processor:
        """The matching preprocessing (tokenizer + image transform)."""

    @abstractmethod
    def encode(self, batch: EncoderBatch) -> torch.Tensor:
        """[B, D] float32 embeddings, not normalised (normalisation belongs to loss/index)."""

    @property
    def logit_scale(self) -> torch.Tensor:
        """Learnable log temperature used by the default contrastive loss."""
        raise ModelError(f"model {self.registry_name!r} has no logit_scale; it must override embedding_loss()")

    # -- training -----------------------------------------------------------------------
    def forward(
        self,
        queries: EncoderBatch,
        positives: Optional[EncoderBatch] = None,
        negatives: Optional[EncoderBatch] = None,
        **loss_kwargs: Any,
    ) -> Union[torch.Tensor, ContrastiveOutput]:
        """`model(batch)` encodes; `model(queries, positives, ...)` returns the loss output.

        Training calls the second form through the DDP/Accelerate wrapper (one forward per
        step, so gradient synchronisation sees every parameter use)."""
        if positives is None:
            return self.encode(queries)
        return self.loss(queries, positives, negatives, **loss_kwargs)

    def loss(
        self,
        queries: EncoderBatch,
        positives: EncoderBatch,
        negatives: Optional[EncoderBatch] = None,
        **loss_kwargs: Any,
    ) -> ContrastiveOutput:
        """The loss of one batch in three steps that GradCache (`training.grad_cache`) runs over
        chunks instead: encode, `loss_targets` from the batches (no gradient), `embedding_loss`
        from the embeddings. The positives' hashed candidate ids travel in
        `positives.tensors["did"]` (set by `collate_triples`)."""
        hard_neg_num = loss_kwargs.get("hard_neg_num", 0)
        if hard_neg_num > 0 and (negatives is None or len(negatives) != len(queries) * hard_neg_num):
            got = 0 if negatives is None else len(negatives)
            raise ModelError(
                f"hard_neg_num={hard_neg_num} needs {len(queries) * hard_neg_num} negatives "
                f"(query-major: query i's at rows i*H..i*H+H-1), got {got}"
            )
        n = self.encode(negatives) if hard_neg_num > 0 and negatives is not None else None
        q, p = self.encode(queries), self.encode(positives)
        with torch.no_grad():
            targets = self.loss_targets([queries], [positives], [negatives] if n is not None else [], **loss_kwargs)
        return self.embedding_loss(q, p, n, **targets, **loss_kwargs)

    def loss_targets(
        self,
        queries: Sequence[EncoderBatch],
        positives: Sequence[EncoderBatch],
        negatives: Sequence[EncoderBatch],
        *,
        hard_neg_num: int = 0,
        loss_average: str = "all",
        **_: Any,
    ) -> dict[str, Any]:
        """What `embedding_loss` needs besides the embeddings, computed without gradient from the
        batches (as chunks, in order; `negatives` empty without hard negatives): here the mask of
        the samples whose every side has an image, when `loss_average = "image-samples"`.
        BLIP adds its momentum embeddings."""
        if loss_average == "all":
            return {}
        mask = torch.cat([b.has_image for b in queries]) & torch.cat([b.has_image for b in positives])
        if negatives and hard_neg_num > 0:
            mask = mask & torch.cat([b.has_image for b in negatives]).view(len(mask), hard_neg_num).all(dim=1)
        return {"sample_mask": mask}

    def embedding_loss(
        self,
        q: torch.Tensor,
        p: torch.Tensor,
        n: Optional[torch.Tensor] = None,
        *,
        hard_neg_num: int = 0,
        in_batch_neg_num: int = 0,
        hard_negatives: str = "own",
        gather: bool = True,
        sample_mask: Optional[torch.Tensor] = None,
        **_: Any,
    ) -> ContrastiveOutput:
        """One-directional InfoNCE query -> candidate (spec 5.7) from the embeddings alone
        (`n`: [B*H, D], query-major); hard negatives as each query's own row ("own", UniIR) or as
        columns shared by all queries ("shared", E5-V). Other keyword arguments the loop passes
        to every loss (`progress`, `loss_average`) are unused here."""
        from uniir_cli.models.losses import contrastive_loss, hard_negative_loss

        if hard_neg_num > 0 and n is not None and hard_negatives == "own":
            return hard_negative_loss(q, p, n.view(len(q), hard_neg_num, -1), self.logit_scale,
                                      in_batch_neg_num=in_batch_neg_num, sample_mask=sample_mask)
        shared = n if hard_neg_num > 0 else None
        return contrastive_loss(q, p, self.logit_scale, gather=gather, negatives=shared, sample_mask=sample_mask)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for activation memory during training."""
        raise ModelError(f"model {self.registry_name!r} does not support gradient checkpointing")

    # -- checkpoints --------------------------------------------------------------------
    @classmethod
    def loading_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Constructor kwargs that rebuild the architecture without fetching initial
        weights (they come from the checkpoint); override for other weight options."""
        kwargs = dict(kwargs)
        if "pretrained" in kwargs:
            kwargs["pretrained"] = ""
        return kwargs

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint folder holds: every weight (a LoRA model: its adapter)."""
        return self.state_dict()

    def load_checkpoint_state_dict(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        """Load what `checkpoint_state_dict` saved, strictly (a resumed run, `from_pretrained`)."""
        from uniir_cli.models.checkpoint_io import load_state_dict_strict

        load_state_dict_strict(self, state_dict, source=source)

    def load_upstream_state_dict(self, state_dict: dict[str, torch.Tensor], source: str) -> None:
        """Load a released UniIR state dict (strict). Models whose names differ map them."""
        from uniir_cli.models.checkpoint_io import load_state_dict_strict

        load_state_dict_strict(self, state_dict, source=source)

    def save_pretrained(self, directory: PathLike) -> Path:
        """Write `model.safetensors` + `model.json` (weights only, no optimizer state)."""
        from uniir_cli.models.checkpoint_io import save_folder

        return save_folder(
            directory,
            name=self.registry_name,
            kwargs=self.config,
            state_dict=self.checkpoint_state_dict(),
            embedding_dim=self.embedding_dim,
            provenance=self.provenance,
        )

    @classmethod
    def build(cls, **kwargs: Any) -> Retriever:
        """The model from constructor kwargs; an option it does not take is a `ConfigError`
        naming the options it does take."""
        signature = inspect.signature(cls.__init__)
        accepted = [p for p in signature.parameters if p != "self"]
        try:
            signature.bind(None, **kwargs)
        except TypeError:
            unknown = sorted(set(kwargs) - set(accepted))
            raise ConfigError(
                f"model {cls.registry_name!r} does not take option(s) {', '.join(unknown) or '(see signature)'}; "
                f"it takes: {', '.join(accepted)}"
            ) from None
        return cls(**kwargs)

    @classmethod
    def from_pretrained(cls, directory: PathLike) -> Retriever:
        """Rebuild this model from a folder that `save_pretrained` wrote, load its weights
        strictly, and return it in eval mode on the CPU (`uniir_cli.registry.load_model`
        loads a folder of any registered model)."""
        from uniir_cli.models.checkpoint_io import read_folder

        meta, state_dict = read_folder(directory)
        name = meta["model"]
        if name != cls.registry_name:
            raise ModelError(
                f"{directory}: checkpoint holds model {name!r}, not {cls.registry_name!r}; "
                "load it with uniir_cli.registry.load_model"
            )
        model = cls.build(**cls.loading_kwargs(meta.get("kwargs", {})))
        model.config = dict(meta.get("kwargs", {}))
        model.provenance = dict(meta.get("provenance", {}))
        model.load_checkpoint_state_dict(state_dict, str(directory))
        return model.eval()
