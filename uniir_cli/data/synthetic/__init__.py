"""The learnable synthetic M-BEIR of the demo and the tests, in the real on-disk layout.

`scenes` draws the images and writes the texts, `builder` makes the records of every pair,
`tree_files` serialises them, `generate` writes the tree.
"""

from uniir_cli.data.synthetic.generate import MARKER, SIZES, SyntheticSummary, generate_synthetic_mbeir, parse_size
from uniir_cli.data.synthetic.records import SizeSpec
from uniir_cli.data.synthetic.tree_files import INSTRUCTIONS, UPSAMPLE_FACTORS, instructions_tsv

__all__ = [
    "INSTRUCTIONS",
    "MARKER",
    "SIZES",
    "UPSAMPLE_FACTORS",
    "SizeSpec",
    "SyntheticSummary",
    "generate_synthetic_mbeir",
    "instructions_tsv",
    "parse_size",
]
