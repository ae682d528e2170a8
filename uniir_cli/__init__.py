"""uniir: universal multimodal retrieval (UniIR / M-BEIR) as one command-line tool."""

__version__ = "0.1.0"
