"""BLIP-SF / BLIP-FF: an own port of BLIP's ViT and MED BERT with upstream parameter names."""

from uniir_cli.models.blip.model import (
    BlipFeatureFusion,
    BlipScoreFusion,
    identify_upstream_blip,
)

__all__ = ["BlipFeatureFusion", "BlipScoreFusion", "identify_upstream_blip"]
