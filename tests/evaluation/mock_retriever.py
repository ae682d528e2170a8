"""Mock embedders with known answers for pipeline tests: the processor makes each item's
vector itself, the model returns it (times a scale)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from uniir_cli.models.base import EncoderBatch, Processor, Retriever


class VectorProcessor(Processor):
    """Subclasses map (text, image) to `{"v": vector}`; batches stack the vectors."""

    def collate(self, items: Sequence[dict[str, Any]]) -> EncoderBatch:
        n = len(items)
        return EncoderBatch(torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool),
                            {"v": torch.stack([i["v"] for i in items])})


class VectorRetriever(Retriever):
    """Encodes an item as its processor's vector times `scale`."""

    processor_class: ClassVar[type[VectorProcessor]]
    dim: ClassVar[int]
    scale: ClassVar[float] = 1.0

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.unused = nn.Parameter(torch.zeros(1))

    @property
    def embedding_dim(self) -> int:
        return self.dim

    @property
    def processor(self) -> Processor:
        return self.processor_class()

    def encode(self, batch: EncoderBatch) -> torch.Tensor:
        return batch.tensors["v"] * self.scale
