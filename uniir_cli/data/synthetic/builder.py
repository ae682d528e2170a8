"""Scenes -> the in-memory synthetic M-BEIR: queries, candidates, pools and ids of every pair.

Randomness comes only from `random.Random` instances seeded with strings derived from the
seed and the pair name, so one pair's records do not depend on another's.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from uniir_cli.data import benchmark as bm
from uniir_cli.data.benchmark import DATASET_BY_SLUG, DATASETS, EVAL_PAIRS, Dataset, EvalPair
from uniir_cli.data.synthetic import scenes as sc
from uniir_cli.data.synthetic.records import (
    ABSENT,
    CROSS_POSITIVE_RATE,
    HARD_NEGATIVE_RATE,
    Cand,
    ImageRef,
    Query,
    SizeSpec,
    id_key,
)
from uniir_cli.errors import ConfigError

log = logging.getLogger(__name__)

Made = tuple["Query", list["Cand"]]  # a query and the distractors it adds to its pool
_WikiPool = dict[str, dict[Any, "Cand"]]  # entity id -> article variant / question type -> candidate


@dataclass
class _Slot:
    """What a scene-based pair builder needs for one query: its pair, randomness, the pool's
    sampler, how many distractors to add and where candidate / query images go."""

    pair: EvalPair
    rng: random.Random
    sampler: Sampler
    k: int
    folder: str
    qfolder: str


def _scene_src(scene: sc.Scene, **extra: Any) -> dict[str, Any]:
    return {"scene": scene.to_dict(), **extra}


class Sampler:
    """Draws scenes of one domain without repeating a semantic scene within one pool."""

    def __init__(self, domain: str, rng: random.Random, strict: bool, label: str) -> None:
        self.keys = sc.scene_keys(domain)
        self.rng, self.strict, self.label = rng, strict, label
        self.used: set[tuple[str, ...]] = set()

    def _take(self, key: tuple[str, ...]) -> sc.Scene:
        self.used.add(key)
        return sc.scene_from_key(key, self.rng)

    def fresh(self) -> sc.Scene:
        for _ in range(64):
            key = self.rng.choice(self.keys)
            if key not in self.used:
                return self._take(key)
        unused = [k for k in self.keys if k not in self.used]
        if unused:
            return self._take(self.rng.choice(unused))
        if self.strict:
            raise ConfigError(f"synthetic pool {self.label} ran out of distinct scenes; use a smaller --size")
        log.debug("pool %s repeats scenes (scene space exhausted)", self.label)
        return sc.scene_from_key(self.rng.choice(self.keys), self.rng)

    def neighbour(self, scene: sc.Scene, attributes: Iterable[str] = sc.ATTRIBUTES) -> sc.Scene | None:
        """An unused scene that differs from `scene` in exactly one attribute (a hard distractor)."""
        attrs = list(attributes)
        self.rng.shuffle(attrs)
        for attribute in attrs:
            values = [v for v in sc.attribute_values(scene.domain, attribute) if v != getattr(scene, attribute)]
            self.rng.shuffle(values)
            for value in values:
                key = scene.with_attribute(attribute, value).key
                if key not in self.used:
                    return self._take(key)
        return None

    def group(self, distractors: int) -> tuple[sc.Scene, list[sc.Scene]]:
        scene = self.fresh()
        near = [self.neighbour(scene) for _ in range(distractors)]
        return scene, [d for d in near if d is not None]


# ---------------------------------------------------------------------------------------
# The builder


class Builder:
    """Builds every query, candidate and pool of the tree; `build()` then assigns the ids.

    Scene-based pair builders (`_task<id>`) take a `_Slot` and return one query plus the
    distractors it adds to its pool.
    """

    def __init__(self, seed: int, spec: SizeSpec) -> None:
        self.seed, self.spec = seed, spec
        self.queries: dict[tuple[str, str], list[Query]] = {}  # (pair name | dataset slug, split)
        self.pools: dict[tuple[str, str], list[Cand]] = {}  # (pair name, val|test) -> local pool
        self.train_pool: dict[str, list[Cand]] = {d.slug: [] for d in DATASETS}
        self.images: dict[str, ImageRef] = {}
        self._image_counts: dict[str, int] = {}

    def rng(self, *parts: object) -> random.Random:
        return random.Random(":".join(["uniir-synthetic", str(self.seed), *map(str, parts)]))

    def image(self, scene: sc.Scene, folder: str) -> ImageRef:
        n = self._image_counts.get(folder, 0) + 1
        self._image_counts[folder] = n
        stem = folder.replace("_images/", "_").replace("/", "_")
        path = f"{bm.IMAGES_DIR}/{folder}/{stem}_{n:06d}.jpg"
        img = ImageRef(scene, path)
        self.images[path] = img
        return img

    def counts(self, split: str) -> int:
        return {"train": self.spec.train, "val": self.spec.val, "test": self.spec.test}[split]

    def build(self) -> None:
        done: set[str] = set()
        for pair in EVAL_PAIRS:
            if pair.name in done:
                continue
            if pair.dataset.slug == "mscoco":
                self._mscoco()
                done |= {"mscoco_task0", "mscoco_task3"}
            elif pair.dataset.slug in ("oven", "infoseek"):
                self._wiki()
                done |= {"oven_task6", "oven_task8", "infoseek_task6", "infoseek_task8"}
            else:
                self._scene_pair(pair)
                done.add(pair.name)
        self._assign_ids()

    # -- scene-based pairs (one sampler per pool; val and test share the local pool) --------

    def _scene_pair(self, pair: EvalPair) -> None:
        rng = self.rng(pair.name)
        shared: list[Cand] = []
        eval_sampler = Sampler(pair.dataset.domain, rng, strict=True, label=pair.name)
        make = getattr(self, f"_task{pair.task_id}")
        for split in bm.SPLITS:
            train = split == "train"
            sampler = Sampler(pair.dataset.domain, rng, strict=False, label=f"{pair.name}/train") if train else eval_sampler
            pool = self.train_pool[pair.dataset.slug] if train else shared
            slug = pair.dataset.slug
            out = []
            for _ in range(self.counts(split)):
                # Train pools hold the positives plus the hard negatives that some queries get.
                k = int(rng.random() < HARD_NEGATIVE_RATE) if train else self.spec.distractors
                slot = _Slot(pair, rng, sampler, k, f"{slug}_images/{'train' if train else 'pool'}", f"{slug}_images/{split}")
                query, distractors = make(slot)
                pool.extend(query.pos)
                pool.extend(distractors)
                if train:
                    query.neg = distractors[:1]
                out.append(query)
            self.queries[(pair.name, split)] = out
        self.pools[(pair.name, "val")] = self.pools[(pair.name, "test")] = shared

    def _cand(self, pair: EvalPair, scene: sc.Scene, txt: str | None, folder: str | None) -> Cand:
        img = self.image(scene, folder) if folder is not None else None
        return Cand(pair.dataset, txt, img, json.dumps(_scene_src(scene)))

    def _task0(self, s: _Slot) -> Made:  # caption -> image
        scene, near = s.sampler.group(s.k)
        pos = self._cand(s.pair, scene, None, s.folder)
        query = Query(s.pair.dataset, 0, sc.caption(scene, _variant(s.rng)), None, json.dumps(_scene_src(scene)), [pos])
        return query, [self._cand(s.pair, d, None, s.folder) for d in near]

    def _task3(self, s: _Slot) -> Made:  # image -> caption
        scene, near = s.sampler.group(s.k)
        pos = self._cand(s.pair, scene, sc.caption(scene, _variant(s.rng)), None)
        query = Query(s.pair.dataset, 3, None, self.image(scene, s.qfolder), json.dumps(_scene_src(scene)), [pos])
        return query, [self._cand(s.pair, d, sc.caption(d, _variant(s.rng)), None) for d in near]

    def _task1(self, s: _Slot) -> Made:  # question -> two passages about the scene
        scene, near = s.sampler.group(s.k)
        variants = s.rng.sample(range(len(sc.PASSAGE_TEMPLATES)), 2)
        pos = [self._cand(s.pair, scene, sc.passage(scene, v), None) for v in variants]
        query = Query(s.pair.dataset, 1, sc.question(scene, _variant(s.rng)), None, json.dumps(_scene_src(scene)), pos)
        return query, [self._cand(s.pair, d, sc.passage(d, _variant(s.rng)), None) for d in near]

    def _task2(self, s: _Slot) -> Made:  # caption (EDIS) or question (WebQA) -> image+text
        scene, near = s.sampler.group(s.k)
        if s.pair.dataset.slug == "edis":  # several news photos of one event
            text, n_pos = sc.caption(scene, _variant(s.rng)), s.rng.choice((1, 2, 3))
        else:
            text, n_pos = sc.question(scene, _variant(s.rng)), 1
        pos = []
        for v in range(n_pos):
            view = scene if v == 0 else sc.Scene(*scene.key, *sc.random_jitter(s.rng))
            pos.append(self._cand(s.pair, view, sc.short_caption(view, v + s.rng.randrange(3)), s.folder))
        query = Query(s.pair.dataset, 2, text, None, json.dumps(_scene_src(scene)), pos)
        return query, [self._cand(s.pair, d, sc.short_caption(d, s.rng.randrange(3)), s.folder) for d in near]

    def _task4(self, s: _Slot) -> Made:  # image -> the same scene, jittered (NIGHTS)
        scene, near = s.sampler.group(s.k)
        jitter = (scene.dx, scene.dy)
        while jitter == (scene.dx, scene.dy):
            jitter = sc.random_jitter(s.rng)
        twin = self._cand(s.pair, sc.Scene(*scene.key, *jitter), None, s.folder)
        query = Query(s.pair.dataset, 4, None, self.image(scene, s.qfolder), json.dumps(_scene_src(scene)), [twin])
        return query, [self._cand(s.pair, d, None, s.folder) for d in near]

    def _task7(self, s: _Slot) -> Made:  # image + edit text -> the edited scene (CIRR, FashionIQ)
        fashion = s.pair.dataset.domain == "fashion"
        attributes = ("colour", "shape") if fashion else sc.ATTRIBUTES
        target = s.sampler.fresh()
        if fashion:  # the reference is only a query image here, so it may repeat a pool scene
            reference = sc.perturb(target, s.rng.choice(attributes), s.rng)
        else:  # CIRR's reference is also in the pool: it must be a scene no other query uses
            reference = s.sampler.neighbour(target, attributes)
            while reference is None and len(s.sampler.used) < len(s.sampler.keys):
                target = s.sampler.fresh()
                reference = s.sampler.neighbour(target, attributes)
            if reference is None:
                reference = sc.perturb(target, s.rng.choice(attributes), s.rng)
        text = sc.modification(reference, target, s.rng.randrange(2), "fashion" if fashion else "common")
        src = json.dumps(_scene_src(reference, target=target.to_dict()))
        positive = self._cand(s.pair, target, None, s.folder)
        query = Query(s.pair.dataset, 7, text, self.image(reference, s.qfolder), src, [positive])
        distractors = []
        if not fashion and s.k > 0:  # CIRR: the reference image itself is in the pool (a real, hard case)
            distractors.append(Cand(s.pair.dataset, None, query.img, json.dumps(_scene_src(reference))))
        near = [s.sampler.neighbour(target) for _ in range(s.k - len(distractors))]
        return query, distractors + [self._cand(s.pair, d, None, s.folder) for d in near if d is not None]

    # -- MSCOCO: the task-0 image pool is the task-3 query set; 5 captions per image ---------

    def _mscoco(self) -> None:
        d = DATASET_BY_SLUG["mscoco"]
        rng = self.rng("mscoco")
        p0, p3 = bm.EVAL_PAIR_BY_NAME["mscoco_task0"], bm.EVAL_PAIR_BY_NAME["mscoco_task3"]
        for split in bm.SPLITS:
            train = split == "train"
            sampler = Sampler(d.domain, rng, strict=not train, label=f"mscoco/{split}")
            k = self.spec.distractors
            sizes = [int(rng.random() < HARD_NEGATIVE_RATE) if train else k for _ in range(self.counts(split))]
            groups = [sampler.group(n) for n in sizes]
            images: dict[tuple[str, ...], Cand] = {}
            texts: dict[tuple[str, ...], list[Cand]] = {}
            for scene in [s for base, near in groups for s in (base, *near)]:
                if scene.key in images:  # only when the train scene space is exhausted
                    continue
                images[scene.key] = self._cand(p0, scene, None, f"mscoco_images/{split}")
                texts[scene.key] = [self._cand(p3, scene, t, None) for t in sc.captions(scene)]
            q0, q3 = [], []
            for base, near in groups:
                image, caps = images[base.key], texts[base.key]
                q0.append(Query(d, 0, rng.choice(caps).txt, None, None, [image]))
                q3.append(Query(d, 3, None, image.img, None, list(caps)))
                if train and near:
                    q0[-1].neg, q3[-1].neg = [images[near[0].key]], texts[near[0].key][:1]
            self.queries[(p0.name, split)], self.queries[(p3.name, split)] = q0, q3
            img_pool, txt_pool = list(images.values()), [c for cs in texts.values() for c in cs]
            if train:
                self.train_pool["mscoco"] += img_pool + txt_pool
            else:
                self.pools[(p0.name, split)], self.pools[(p3.name, split)] = img_pool, txt_pool

    # -- OVEN / InfoSeek: entities shared by both datasets, cross-dataset positives ----------

    def _wiki(self) -> None:
        rng = self.rng("wiki")
        entities = sc.make_entities(rng, self.spec.entities)
        for group in ("train", "eval"):
            pools = self._wiki_pools(rng, entities, "oven_images/" + ("wiki_train" if group == "train" else "wiki"))
            if group == "train":
                for name, pool in pools.items():
                    self.train_pool[name.split("_")[0]] += [c for cands in pool.values() for c in cands.values()]
                splits: tuple[str, ...] = ("train",)
            else:
                for name, pool in pools.items():
                    flat = [c for cands in pool.values() for c in cands.values()]
                    self.pools[(name, "val")] = self.pools[(name, "test")] = flat
                splits = ("val", "test")
            for split in splits:
                for task in (6, 8):
                    self._wiki_queries(rng, entities, split, task, pools[f"oven_task{task}"], pools[f"infoseek_task{task}"])

    def _wiki_pools(self, rng: random.Random, entities: list[sc.Entity], folder: str) -> dict[str, _WikiPool]:
        """Per pool name, per entity id: OVEN articles (keys 0, 1) or InfoSeek fact passages
        (keys = question types); the task-8 pools add an image of the entity."""
        oven, info = DATASET_BY_SLUG["oven"], DATASET_BY_SLUG["infoseek"]

        def cand(dataset: Dataset, e: sc.Entity, txt: str, with_image: bool, **extra: Any) -> Cand:
            src: dict[str, Any] = {"entity_id": e.id, "title": e.name, **extra}
            img = None
            if with_image:
                scene = _entity_scene(e, rng)
                img, src["scene"] = self.image(scene, folder), scene.to_dict()
            return Cand(dataset, txt, img, json.dumps(src))

        pools: dict[str, _WikiPool] = {}
        for task in (6, 8):
            pools[f"oven_task{task}"] = {
                e.id: {v: cand(oven, e, sc.entity_passage(e, v), task == 8) for v in (0, 1)} for e in entities
            }
            pools[f"infoseek_task{task}"] = {
                e.id: {t: cand(info, e, sc.fact_passage(e, t), task == 8, question_type=t) for t in sc.QUESTION_TYPES}
                for e in entities
            }
        return pools

    def _wiki_queries(self, rng: random.Random, entities: list[sc.Entity], split: str, task: int,
                      oven_pool: _WikiPool, info_pool: _WikiPool) -> None:
        """OVEN: which entity is this (all its articles are positive); InfoSeek: a fact about it
        (the passage stating that fact). Some positives come from the other dataset's pool."""
        oven, info = DATASET_BY_SLUG["oven"], DATASET_BY_SLUG["infoseek"]
        similar = {e.id: [o for o in entities if o != e and (o.shape == e.shape or o.colour == e.colour)] for e in entities}
        oven_queries, info_queries = [], []
        for i in range(self.counts(split)):
            e, qtype = rng.choice(entities), rng.choice(sc.QUESTION_TYPES)
            scene = _entity_scene(e, rng)
            pos = list(oven_pool[e.id].values())
            if rng.random() < CROSS_POSITIVE_RATE:
                pos.append(info_pool[e.id][qtype])
            src = _scene_src(scene, entity_id=e.id, entity_text=e.name)
            text = sc.recognition_question(e, rng.randrange(3))
            query = Query(oven, task, text, self.image(scene, f"oven_images/{split}"), json.dumps(src), pos)
            if split == "train" and similar[e.id] and rng.random() < HARD_NEGATIVE_RATE:
                query.neg = [oven_pool[rng.choice(similar[e.id]).id][0]]
            oven_queries.append(query)

            e = rng.choice(entities)
            scene = _entity_scene(e, rng)
            pos = [info_pool[e.id][qtype]]
            if rng.random() < CROSS_POSITIVE_RATE:
                pos.append(oven_pool[e.id][0])  # article 0 states every fact
            answer = e.answer(qtype)
            src = {"entity_id": e.id, "answer": [answer], "answer_eval": [answer],
                   "data_id": f"infoseek_{split}_{task}_{i:05d}", "question_type": qtype, "scene": scene.to_dict()}
            text = sc.fact_question(qtype, rng.randrange(2))
            image = self.image(scene, f"oven_images/infoseek_{split}")  # InfoSeek images live under oven_images/
            info_queries.append(Query(info, task, text, image, json.dumps(src), pos))
        self.queries[(f"oven_task{task}", split)] = oven_queries
        self.queries[(f"infoseek_task{task}", split)] = info_queries

    # -- ids --------------------------------------------------------------------------------

    def _assign_ids(self) -> None:
        """qids/dids "d:n", n from 1 per dataset: train first, then val, then test; candidates
        shuffled within each pool so that pool order says nothing about relevance."""
        for d in DATASETS:
            rng = self.rng("ids", d.slug)
            cands = list(self.train_pool[d.slug])
            rng.shuffle(cands)
            seen: set[int] = set()
            for pair in (p for p in EVAL_PAIRS if p.dataset == d):
                for split in ("val", "test"):
                    pool = self.pools[(pair.name, split)]
                    if id(pool) not in seen:
                        seen.add(id(pool))
                        block = list(pool)
                        rng.shuffle(block)
                        cands += block
            for n, cand in enumerate(cands, 1):
                cand.did = f"{d.id}:{n}"
            train = [q for p in EVAL_PAIRS if p.dataset == d for q in self.queries[(p.name, "train")]]
            rng.shuffle(train)  # both tasks mixed in the per-dataset train file
            self.queries[(d.slug, "train")] = train
            pairs = [p for p in EVAL_PAIRS if p.dataset == d]
            ordered = train + [q for split in ("val", "test") for p in pairs for q in self.queries[(p.name, split)]]
            for n, query in enumerate(ordered, 1):
                query.qid = f"{d.id}:{n}"
        # Upstream quirk: a VisualNews candidate without a src_content key (a distractor here,
        # so every positive keeps its ground truth).
        positives = {id(c) for split in ("val", "test") for q in self.queries[("visualnews_task0", split)] for c in q.pos}
        distractors = [c for c in self.pools[("visualnews_task0", "test")] if id(c) not in positives]
        min(distractors, key=lambda c: id_key(c.did)).src = ABSENT


def _entity_scene(e: sc.Entity, rng: random.Random) -> sc.Scene:
    """A wiki picture of the entity: its shape and colour, any size, position and background."""
    key = ("wiki", e.shape, e.colour, rng.choice(tuple(sc.SIZES)), rng.choice(tuple(sc.POSITIONS)),
           rng.choice(sc.attribute_values("wiki", "background")))
    return sc.scene_from_key(key, rng)


def _variant(rng: random.Random) -> int:
    """A template index; 60 is a multiple of every template count, so variants stay uniform."""
    return rng.randrange(60)
