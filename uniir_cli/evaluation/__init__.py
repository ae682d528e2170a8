"""Evaluation over a run directory: embed -> index -> retrieve -> score -> report, UniRAG files, interactive search."""
