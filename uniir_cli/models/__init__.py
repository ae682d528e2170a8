"""Retrievers: one interface (`base.Retriever`) for every model, registered by name.

Importing this package is cheap; torch, open_clip and transformers are imported by the
modules that need them (`uniir_cli.registry` imports a model module only when it is used).
"""
