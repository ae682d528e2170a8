#!/usr/bin/env bash
# Wheels the lent GPU machine lacks (its image has Python 3.12, torch, transformers,
# accelerate, timm, but not open_clip, faiss or peft), downloaded here into the git-ignored .whl/
# so that a device call can carry them (64 MiB at most); the transformers 5 stack the `mllm`
# family needs comes along, in the versions CI tests. Run from the repository root:
#
#   bash benchmarks/gpu_wheels.sh
#
# then, as ONE device call (carry [".whl"], timeout_s 600; gpu_checks.sh keeps itself to
# about 9 minutes and packs its results into one file, as the device returns at most 8):
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site:$PWD && bash benchmarks/gpu_checks.sh /tmp/gpu; tar czf $OUT/gpu.tgz -C /tmp gpu
#
# (uniir runs from the checkout through PYTHONPATH: its torch pin is for the CPU machines; the
# GPU image's own torch and accelerate are used as they are.)
set -euo pipefail
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl \
    open_clip_torch==3.3.0 ftfy wcwidth faiss-cpu==1.15.1 \
    peft==0.21.2 transformers==5.25.0 tokenizers==0.23.3 huggingface_hub==2.4.0 safetensors==0.8.0
ls -la .whl
