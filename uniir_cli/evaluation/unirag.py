"""UniRAG output (`retrieve.rag = true`): raw records of the global-pool results, plus complements.

One jsonl per pair, one line per query in query order:
`{"query": <query record>, "candidates": [<top-k records>], "complement_candidates": [...]}`.
For each retrieved candidate that is exactly a text or an image, the candidate itself is
embedded as a query for the other modality (MSCOCO instructions, as upstream) and searched
in the global pool; its complement is the first of the top 10 with the wanted modality that
differs from the original query (image path, resp. text), else null. Image+text
candidates get no complement, so that list can be shorter. Unlike upstream, the records keep
their own dataset names (upstream writes "MSCOCO" for every pair in this mode).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from uniir_cli import atomic
from uniir_cli.config import Config
from uniir_cli.data.benchmark import DATASET_BY_SLUG, IMAGE, TEXT, EvalPair
from uniir_cli.data.ids import hash_did, unhash_dids, unhash_qids
from uniir_cli.data.instructions import PromptPicker, QueryText
from uniir_cli.data.layout import MBeirLayout
from uniir_cli.data.loaders import RawItem, RawItems
from uniir_cli.data.mbeir import CandidateRecord, read_queries
from uniir_cli.evaluation.retrieval import read_results
from uniir_cli.models.encode import encode_dataset
from uniir_cli.ranking.knn import PAD_ID, PoolBlock, exact_kernel, exact_search

log = logging.getLogger(__name__)

COMPLEMENT_DATASET = DATASET_BY_SLUG["mscoco"].id
COMPLEMENT_DEPTH = 10
WANTED = {TEXT: IMAGE, IMAGE: TEXT}


def complement_items(records: list[CandidateRecord], picker: PromptPicker) -> list[RawItem]:
    """Each text/image candidate as a query for the other modality, with an MSCOCO instruction."""
    items = []
    for record in records:
        key = (COMPLEMENT_DATASET, record.modality, WANTED[record.modality])
        prompt = picker.pick(key, f"complement:{record.did}") if picker.enabled else None
        text = QueryText(record.txt if record.modality == TEXT else None, prompt)
        items.append(RawItem(record.did, text.joined, record.img_path if record.modality == IMAGE else None, text))
    return items


def write_rag(
    rag_file: Callable[[EvalPair], Path],
    results: Callable[[EvalPair], Path],
    pairs: list[EvalPair],
    split: str,
    layout: MBeirLayout,
    model: Any,
    picker: PromptPicker,
    candidates: list[PoolBlock],
    record_of: Callable[[str], CandidateRecord],
    config: Config,
    device: torch.device,
) -> None:
    """Write the UniRAG jsonl of every pair from its global-pool results.

    Complement queries are embedded with the run's embed settings (batch size, DataLoader
    workers, precision, bad-image policy) and searched exactly with its index settings.
    """
    for pair in pairs:
        found = read_results(results(pair))
        queries = {q.qid: q for q in read_queries(layout.query_file(pair, split))}
        ranked = [unhash_dids(row[row != PAD_ID]) for row in found.ids]
        needed = sorted({d for row in ranked for d in row}, key=hash_did)
        records = {did: record_of(did) for did in needed}
        single = [records[d] for d in needed if records[d].modality in WANTED]
        complements: dict[str, list[CandidateRecord]] = {}
        if single:
            embed = config.embed
            items = RawItems(layout, model.processor, complement_items(single, picker), embed.on_bad_image)
            vectors, _ = encode_dataset(
                model, items, embed.batch_size, device, num_workers=embed.num_workers, precision=embed.precision
            )
            _, top = exact_search(
                candidates, vectors, COMPLEMENT_DEPTH, device=device.type,
                kernel=exact_kernel(config.index.backend), precision=config.index.precision,
            )
            for record, row in zip(single, top):
                dids = unhash_dids(row[row != PAD_ID])
                complements[record.did] = [records.get(d) or record_of(d) for d in dids]
        lines = []
        for qid, row in zip(unhash_qids(found.qids), ranked):
            query = queries[qid]
            picked = []
            for did in row:
                record = records[did]
                if record.modality not in WANTED:
                    continue
                wanted = WANTED[record.modality]
                match = next(
                    (c for c in complements[did] if c.modality == wanted and (
                        c.img_path != query.query_img_path if wanted == IMAGE else c.txt != query.query_txt)),
                    None,
                )
                picked.append(match.to_json() if match else None)
            lines.append(json.dumps({
                "query": query.to_json(),
                "candidates": [records[d].to_json() for d in row],
                "complement_candidates": picked,
            }))
        atomic.write_text(rag_file(pair), "".join(line + "\n" for line in lines))
        log.info("UniRAG file of %s: %d queries", pair.name, len(lines))

