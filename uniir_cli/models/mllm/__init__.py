"""MLLM embedders (E5-V, LLaVA-Phi-3(.5), GME, VLM2Vec) as one `mllm` family over stock
transformers classes: `loading` (folders, Hub repos, legacy repairs, adapters), `prompts`
(presets as data), `processor` (one item per worker, left-padded mixed batches), `model`
(pooling from the base model's post-norm hidden states)."""
