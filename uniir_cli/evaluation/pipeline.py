"""The evaluation pipeline over one run directory: embed -> index -> retrieve -> score -> report.

Each step records the hash of its inputs in the run's manifest and is skipped when they are
unchanged (`force` redoes it). Embedding runs on every process of an Accelerate / torchrun
launch; the other steps run on the main process, which alone holds the run's lock and
writes its bookkeeping.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uniir_cli import atomic
from uniir_cli.config import Config
from uniir_cli.data.benchmark import EvalPair, union_pool_file
from uniir_cli.data.eval_sets import (
    candidate_pairs,
    candidate_set_name,
    eval_pairs,
    global_pool_name,
    pools_of,
    query_set_name,
)
from uniir_cli.data.instructions import prompt_picker
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.mbeir import read_qrels
from uniir_cli.data.pool_reader import PoolReader
from uniir_cli.errors import ConfigError, DataError, RunDirError
from uniir_cli.evaluation.embedding import embed_sets, plan_sets, shard_plan
from uniir_cli.evaluation.retrieval import (
    LocalPool,
    results_file,
    retrieve,
    uses_faiss_index,
)
from uniir_cli.evaluation.shards import ShardStore
from uniir_cli.ranking.knn import approximate_recall, build_faiss_index, save_faiss_index, set_search_parameters
from uniir_cli.registry import load_retriever
from uniir_cli.run_session import RunSession, resolve_run_config, run_session
from uniir_cli.rundir import RunDir, file_fingerprint, hash_inputs

log = logging.getLogger(__name__)

STEPS = ("embed", "index", "retrieve", "score", "report")
Progress = Callable[[str, int, int], None]  # (set name, items done, items total)


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate` did: the run and, on the main process when scored, its metrics
    summary (the contents of `metrics/metrics.json`)."""

    run: RunDir
    metrics: dict[str, Any] | None
    tables: list[Any] = field(default_factory=list)  # the report's tables (`reporting.Table`), when reported


def evaluate(
    preset: str | None = None,
    *,
    run_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    checkpoint: str | Path | None = None,
    overrides: Sequence[str] = (),
    settings: Mapping[str, Any] | None = None,
    steps: tuple[str, ...] = STEPS,
    force: bool = False,
    command: str = "eval",
    progress: Progress | None = None,
    on_open: Callable[[RunSession], None] | None = None,
    compare_with: Sequence[str | Path] = (),
) -> Evaluation:
    """Evaluate a retriever over a run directory: the `steps` of the pipeline in order,
    each skipped when its inputs are unchanged (`force` redoes them).

    `preset` starts a run (or extends an existing one's settings); `settings` maps
    `section.key` to a value as the command-line flags do (`{"retrieve.pool": "both"}`;
    None values are ignored); `checkpoint` defaults to the run's latest training checkpoint,
    else the configured model. `on_open` sees the session once the run is locked.
    `compare_with`: scored run directories whose columns the report shows beside this run's
    (e.g. the zero-shot model next to the fine-tuned one); read before anything runs.
    """
    from uniir_cli.evaluation.reporting import scored_run

    compared = [scored_run(Path(directory)) for directory in compare_with]
    run_dir, data_dir, checkpoint = (Path(p) if p is not None else None for p in (run_dir, data_dir, checkpoint))
    resolved = resolve_run_config(preset, list(overrides), run_dir, dict(settings or {}))
    with run_session(command, resolved, preset=preset, run_dir=run_dir, data_dir=data_dir,
                     checkpoint=checkpoint, evaluates=True) as session:
        if on_open is not None and session.is_main_process:
            on_open(session)
        ctx = Context(session.run, session.config, session.layout, session.checkpoint, force,
                      progress if session.is_main_process else None, compared=compared)
        return Evaluation(session.run, run_steps(ctx, steps), ctx.report_tables)


@dataclass
class Context:
    """Everything the steps share."""

    run: RunDir
    config: Config
    layout: MBeirLayout
    checkpoint: Path | None
    force: bool = False
    progress: Progress | None = None
    compared: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (label, metrics) shown beside this run
    _pools: dict[str, PoolReader] = field(default_factory=dict)
    report_tables: list[Any] = field(default_factory=list)  # set by the report step

    @property
    def split(self) -> str:
        return self.config.data.split

    @functools.cached_property
    def pairs(self) -> list[EvalPair]:
        """The evaluated pairs: `data.tasks`, or those found in the data tree."""
        return eval_pairs(self.config, self.layout)

    def pool_reader(self, pair: EvalPair) -> PoolReader:
        name = pair.pool_name(self.split)
        if name not in self._pools:
            path = self.layout.require(self.layout.pool_file(pair, self.split), f"local pool of {pair.name}")
            reader = PoolReader.build(path)
            if len(reader) == 0:
                raise DataError(f"{path}: the local pool of {pair.name} holds no candidates; fill it, or leave the pair out with --tasks")
            self._pools[name] = reader
        return self._pools[name]

    def candidate_pools(self) -> list[PoolReader]:
        """The pool files the candidate set is read from. For the global pool of the test split
        that is the union pool when the tree has it (so `--tasks X --pool global`
        needs X's local pool only), else the union of the tree's local pools: M-BEIR's union
        test pool is exactly the union of its 16. The val union pool is not (it keeps only the candidates
        the val queries name), so val always takes the local pools."""
        union = self.layout.path(union_pool_file(self.split))
        if "global" in pools_of(self.config.retrieve.pool) and self.split == "test" and union.is_file():
            if "union" not in self._pools:
                self._pools["union"] = PoolReader.build(union)
            return [self._pools["union"]]
        return [self.pool_reader(pair) for pair in candidate_pairs(self.config, self.layout)]

    def candidate_record(self, did: str) -> Any:
        """The raw record of an embedded candidate, from the pool file that holds it."""
        for reader in self.candidate_pools():
            if did in reader:
                return reader[did]
        raise RunDirError(f"candidate {did} is in none of the candidate pools of this run")

    def model_identity(self) -> Any:
        """What the vectors depend on: the configured model, or the checkpoint's files (and,
        for a plain Hugging Face folder, the model options that apply to it: prompt, dtype...)."""
        if self.checkpoint is None:
            return ["pretrained", self.config.section("model")]
        path = Path(self.checkpoint)
        if not path.is_dir():
            return ["checkpoint", file_fingerprint(path)]
        files = sorted(f for pattern in ("*.safetensors", "*.bin", "*.json") for f in path.glob(pattern))
        identity = ["checkpoint", [file_fingerprint(f) for f in files]]
        return identity if (path / "model.json").is_file() else [*identity, self.config.section("model")]


# ---------------------------------------------------------------------------- steps


def step_embed(ctx: Context) -> None:
    """Every process encodes its shards; the main process records the step."""
    from uniir_cli.distributed import process_state

    state = process_state()
    model = load_retriever(ctx.config, ctx.checkpoint)
    sets = plan_sets(ctx.config, ctx.layout, ctx.pairs, model.processor, ctx.pool_reader, ctx.candidate_pools())
    plans = [shard_plan(s, ctx.model_identity(), ctx.config) for s in sets]  # images included
    digest = hash_inputs(ctx.model_identity(), [p.shard_hashes for p in plans], ctx.config.section("embed"))
    if not ctx.force and ctx.run.is_fresh("embed", digest) and all(
        ShardStore(ctx.run.embeddings_dir(s.name)).is_complete() for s in sets
    ):
        log.info("embed: inputs unchanged, skipped (use --force to redo)")
        return

    def work() -> None:
        embed_sets(
            sets, plans, model, ctx.run.embeddings_dir, ctx.config,
            rank=state.process_index, world=state.num_processes, device=state.device,
            progress=ctx.progress if state.is_main_process else None, force=ctx.force,
        )
        state.wait_for_everyone()

    if not state.is_main_process:
        work()
        return
    with ctx.run.step("embed", digest):
        work()
        stores = {s.name: ShardStore(ctx.run.embeddings_dir(s.name)) for s in sets}
        incomplete = [name for name, store in stores.items() if not store.is_complete()]
        if incomplete:
            raise RunDirError(f"embedding sets {', '.join(incomplete)} are incomplete after embedding; rerun `uniir embed`")
        # From the shard markers: every rank's shards and those finished by earlier runs.
        ctx.run.record("skipped_images", {name: store.skipped_images() for name, store in stores.items()})
        # What made the vectors: settings such as an MLLM's prompt, dtype and image budget change them.
        ctx.run.record("embedded_with", {"model": model.registry_name, "options": model.config,
                                         "embedding_dim": model.embedding_dim, "provenance": model.provenance})


def step_index(ctx: Context) -> None:
    """Write each pool's member ids (local pools out of the candidate set; global = all),
    and, for approximate faiss factories, build and save each pool's faiss index."""
    digest = hash_inputs(ctx.run.step_hash("embed"), ctx.config.section("index"), ctx.config.retrieve.pool, [p.name for p in ctx.pairs])
    if not ctx.force and ctx.run.is_fresh("index", digest):
        log.info("index: inputs unchanged, skipped")
        return
    with ctx.run.step("index", digest):
        candidates = ShardStore(ctx.run.embeddings_dir(candidate_set_name(ctx.split)))
        pools: list[tuple[str, np.ndarray, list[EvalPair], bool]] = []  # name, ids, pairs, global?
        if "global" in pools_of(ctx.config.retrieve.pool):
            pools.append((global_pool_name(ctx.split), candidates.ids(), candidate_pairs(ctx.config, ctx.layout), True))
        if "local" in pools_of(ctx.config.retrieve.pool):
            pools += [(p.pool_name(ctx.split), ctx.pool_reader(p).dids, [p], False) for p in ctx.pairs]
        for name, ids, pairs, is_global in pools:
            with atomic.atomic_path(ctx.run.pool_ids_file(name)) as tmp:
                np.save(tmp, np.asarray(ids, dtype=np.int64))
            info: dict[str, Any] = {"count": int(len(ids)), "pairs": [p.name for p in pairs]}
            ctx.run.faiss_index_file(name).unlink(missing_ok=True)
            if uses_faiss_index(ctx.config):
                blocks = candidates.blocks() if is_global else LocalPool(candidates.blocks(), ids, name)
                index = build_faiss_index(blocks, ctx.config.index.factory)
                save_faiss_index(index, ctx.run.faiss_index_file(name))
                info.update(_recall_check(ctx, index, blocks, pairs))
            atomic.write_json(ctx.run.pool_info_file(name), info)


RECALL_SAMPLE = 1000  # queries the index step checks an approximate index with


def _recall_check(ctx: Context, index: Any, blocks: Any, pairs: list[EvalPair]) -> dict[str, Any]:
    """Recall@10 of the approximate index against exact search, on an even sample of the
    pool's embedded queries: written to pool.json and shown by `uniir index`."""
    set_search_parameters(index, ctx.config.index.nprobe, ctx.config.index.ef_search)
    evaluated = ctx.pairs
    stores = [ShardStore(ctx.run.embeddings_dir(query_set_name(p, ctx.split))) for p in pairs if p in evaluated]
    sample = _even_sample([b.vectors for s in stores for b in s.blocks()], RECALL_SAMPLE)
    if not len(sample):
        return {}
    recall = approximate_recall(index, blocks, sample, 10)
    log.info("index: %s recall@10 against exact search %.4f on %d queries", ctx.config.index.factory, recall, len(sample))
    return {"factory": ctx.config.index.factory, "recall_at_10_vs_exact": round(recall, 4), "recall_sample": int(len(sample)),
            "nprobe": ctx.config.index.nprobe, "ef_search": ctx.config.index.ef_search}


def _even_sample(blocks: list[np.ndarray], count: int) -> np.ndarray:
    """Up to `count` rows spread evenly over the concatenation of `blocks` (memory-mapped shards:
    only the sampled rows are read), as fp32."""
    offsets = np.cumsum([0] + [len(b) for b in blocks])
    if not offsets[-1]:
        return np.zeros((0, 1), np.float32)
    picks = np.linspace(0, offsets[-1] - 1, min(count, int(offsets[-1]))).astype(np.int64)
    owners = np.searchsorted(offsets, picks, side="right") - 1
    return np.stack([blocks[o][p - offsets[o]] for o, p in zip(owners, picks)]).astype(np.float32)


def pool_ids(run: RunDir, pool_name: str) -> np.ndarray:
    path = run.pool_ids_file(pool_name)
    if not path.is_file():
        raise RunDirError(f"{path} is missing; run `uniir index` first")
    return np.load(path)


def step_retrieve(ctx: Context) -> list[tuple[EvalPair, str]]:
    """Top-k of every query set; with `retrieve.rag`, also the UniRAG files (a step of their
    own, so asking for them once does not redo retrieval, nor does leaving them out later)."""
    searched = [(p, pool) for pool in pools_of(ctx.config.retrieve.pool) for p in ctx.pairs]
    if ctx.config.retrieve.rag and "global" not in pools_of(ctx.config.retrieve.pool):
        raise ConfigError("retrieve.rag writes UniRAG files from the global pool: use --pool global or both")
    settings = {k: v for k, v in ctx.config.section("retrieve").items() if k != "rag"}
    digest = hash_inputs(ctx.run.step_hash("index"), settings)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if ctx.force or not ctx.run.is_fresh("retrieve", digest):
        with ctx.run.step("retrieve", digest):
            searched = retrieve(
                ctx.run, ctx.config, ctx.pairs, ctx.split,
                lambda pair: pool_ids(ctx.run, pair.pool_name(ctx.split)), device=device,
            )
    else:
        log.info("retrieve: inputs unchanged, skipped")
    rag_digest = hash_inputs(ctx.run.step_hash("retrieve"), ctx.config.section("embed"))
    if ctx.config.retrieve.rag and (ctx.force or not ctx.run.is_fresh("unirag", rag_digest)):
        with ctx.run.step("unirag", rag_digest):
            write_unirag(ctx, torch.device(device))
    return searched


def write_unirag(ctx: Context, device: Any) -> None:
    from uniir_cli.evaluation.unirag import write_rag

    write_rag(
        lambda pair: ctx.run.rag_file(query_set_name(pair, ctx.split), "global"),
        lambda pair: results_file(ctx.run, pair, ctx.split, "global"),
        ctx.pairs, ctx.split, ctx.layout,
        load_retriever(ctx.config, ctx.checkpoint).to(device).eval(),
        prompt_picker(ctx.config, ctx.layout),
        ShardStore(ctx.run.embeddings_dir(candidate_set_name(ctx.split))).blocks(),
        ctx.candidate_record, ctx.config, device,
    )


def step_score(ctx: Context, searched: list[tuple[EvalPair, str]]) -> dict[str, Any]:
    from uniir_cli.evaluation.scoring import score

    qrels_files = {p.name: ctx.layout.qrels_file(p, ctx.split) for p, _ in searched}
    digest = hash_inputs(
        ctx.run.step_hash("retrieve"),
        {name: file_fingerprint(path) for name, path in qrels_files.items() if path.is_file()},
        ctx.config.section("score"),
    )
    if not ctx.force and ctx.run.is_fresh("score", digest) and ctx.run.metrics_json.is_file():
        log.info("score: inputs unchanged, skipped")
        return json.loads(ctx.run.metrics_json.read_text())
    with ctx.run.step("score", digest):
        return score(
            ctx.run, searched, ctx.split,
            lambda pair: _nonempty_qrels(ctx.layout.require(qrels_files[pair.name], f"qrels of {pair.name}"), pair),
            cutoff=ctx.config.score.rank_cutoff,
        )


def _nonempty_qrels(path: Path, pair: EvalPair) -> Any:
    qrels = read_qrels(path)
    if len(qrels) == 0:
        raise DataError(f"{path}: no relevance judgements; {pair.name} cannot be scored (fill the file, or leave the pair out with --tasks)")
    return qrels


def step_report(ctx: Context, summary: dict[str, Any]) -> None:
    """Write report.md and keep its tables (`reporting.Table`) in `ctx.report_tables` for the caller to print."""
    from uniir_cli.evaluation.reporting import build_tables, distinct_labels, model_lineage, reference_name, to_markdown

    runs = distinct_labels([(ctx.run.root.name, summary), *ctx.compared])
    # The paper's columns only next to the published benchmark (a tiny model on other data would seem to beat it).
    tables = build_tables(runs, reference_name(ctx.config.model) if ctx.layout.is_published_mbeir() else None)
    lineage = model_lineage(ctx.checkpoint, {"pretrained": ctx.config.model.pretrained, **ctx.config.model.options})
    header = f"Model: {' + '.join(lineage)}\n\n" if lineage else ""
    atomic.write_text(ctx.run.report_md, header + to_markdown(tables))
    ctx.report_tables = tables


def run_steps(ctx: Context, steps: tuple[str, ...] = STEPS) -> dict[str, Any] | None:
    """Run the requested steps in order; returns the metrics summary when scored (main process)."""
    from uniir_cli.distributed import process_state

    if "embed" in steps:
        step_embed(ctx)
    if not process_state().is_main_process:
        return None
    summary = None
    if "index" in steps:
        step_index(ctx)
    searched = [(p, pool) for pool in pools_of(ctx.config.retrieve.pool) for p in ctx.pairs]
    if "retrieve" in steps:
        searched = step_retrieve(ctx)
    if "score" in steps or "report" in steps:
        summary = step_score(ctx, searched)
    if "report" in steps and summary is not None:
        step_report(ctx, summary)
    return summary

