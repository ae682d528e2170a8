"""Ranking primitives shared by evaluation and training: exact and faiss k-nearest-neighbour search, retrieval metrics."""
