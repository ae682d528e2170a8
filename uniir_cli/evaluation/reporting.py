"""Paper-style result tables: one column per run next to published reference columns.

References ship in `uniir_cli/reference/` (the paper's Table 2 and Table 6, a third-party
reproduction of the released checkpoints, and the UniIR fork's MLLM table on six pairs,
local pools). Values are percent, R@5 except R@10 for Fashion200K and FashionIQ (a declared
dataset's `recall_k`). Rows are the pairs the runs evaluated, M-BEIR's in the paper's order
first; reference columns only fill M-BEIR's rows, and one without any of the rows is left out.
The Average is a plain mean over the rows (the paper's Average when they are M-BEIR's 16; the
label names the count otherwise), for each column that has every row. A
model's references are found by its `reference_name`: `model.options.reference` when set
(MLLM presets name the fork's column), else the registry name.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from uniir_cli.data.benchmark import EVAL_PAIR_BY_NAME, EVAL_PAIRS, PAPER_TASK, TASKS
from uniir_cli.data.catalog import PAIR_NAME_RE
from uniir_cli.errors import RunDirError, UniirError
from uniir_cli.rundir import RunDir


def _side(modality: str, side: str) -> str:
    """Paper notation: qt, ci, (qi,qt), ..."""
    parts = [f"{side}{m[0]}" for m in modality.split(",")]
    return parts[0] if len(parts) == 1 else f"({','.join(parts)})"


@dataclass
class Column:
    label: str
    values: dict[str, float] = field(default_factory=dict)  # pair name -> percent

    def average(self, pairs: list[str]) -> float | None:
        """The plain mean over `pairs`, when the column has every one of them."""
        if pairs and all(name in self.values for name in pairs):
            return sum(self.values[name] for name in pairs) / len(pairs)
        return None


def _read_reference(name: str) -> dict[str, list[float]]:
    """column -> 16 values in EVAL_PAIRS order (comment lines and the Average row skipped)."""
    text = (resources.files("uniir_cli") / "reference" / name).read_text()
    rows = list(csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#")))
    rows = [r for r in rows if r["dataset"] != "Average"]
    assert len(rows) == len(EVAL_PAIRS), f"{name}: expected {len(EVAL_PAIRS)} rows"
    columns = [c for c in rows[0] if c not in ("task_type", "task", "dataset")]
    return {c: [float(r[c]) for r in rows] for c in columns}


# model registry name -> (paper column, released-checkpoint column prefix or None)
_REFERENCES = {
    "clip_sf": ("uniir_clip_sf", "clip_sf"),
    "clip_ff": ("uniir_clip_ff", None),
    "blip_sf": ("uniir_blip_sf", None),
    "blip_ff": ("uniir_blip_ff", "blip_ff"),
}


# reference name -> (column of seed_fork_mllm_results.csv, label)
_FORK_REFERENCES = {
    "fork_e5v": ("e5v", "fork e5v (fork prompts)"),
    "fork_phi3_zero_shot": ("phi3_zero_shot", "fork phi3 zero-shot"),
    "fork_phi3_two_stages": ("phi3_two_stages", "fork phi3 two stages"),
    "fork_phi3_stage1": ("phi3_stage1", "fork phi3 stage 1"),
    "fork_phi3_stage1_nli": ("phi3_stage1_nli", "fork phi3 stage 1 NLI"),
}
# (seed task type, dataset) of the fork's table -> pair name (the seed calls types 7 "8")
_FORK_PAIRS = {
    ("1", "MSCOCO"): "mscoco_task0", ("4", "MSCOCO"): "mscoco_task3", ("4", "Fashion200K"): "fashion200k_task3",
    ("5", "NIGHTS"): "nights_task4", ("8", "FashionIQ"): "fashioniq_task7", ("8", "CIRR"): "cirr_task7",
}


def model_lineage(checkpoint: Path | None, options: dict[str, Any]) -> list[str]:
    """What the evaluated weights are made of, base first: `pretrained`, each earlier stage's
    merged adapter (uniir LoRA checkpoints name theirs in model.json), then the checkpoint's
    own LoRA adapter. Empty for models without adapters."""
    kwargs = dict(options)
    own = None
    if checkpoint is not None and (Path(checkpoint) / "model.json").is_file():
        kwargs = json.loads((Path(checkpoint) / "model.json").read_text(encoding="utf-8")).get("kwargs", {})
        own = f"{checkpoint} (LoRA r={kwargs['lora'].get('r', 16)})" if kwargs.get("lora") else None
    stages: list[str] = []
    adapter = kwargs.get("adapter") or ""
    while adapter and len(stages) < 32:  # each stage names the one before it
        stages.insert(0, f"{adapter} (merged)")
        meta = Path(adapter) / "model.json"
        adapter = json.loads(meta.read_text(encoding="utf-8")).get("kwargs", {}).get("adapter", "") if meta.is_file() else ""
    if not stages and own is None:
        return []
    return [str(kwargs.get("pretrained", "")), *stages, *([own] if own else [])]


def reference_name(model: Any) -> str:
    """The key of a model config's reference columns."""
    return str((model.options or {}).get("reference") or model.name)


def fork_column(name: str) -> Column:
    """The fork's reported metric per pair (fractions in its README), in percent."""
    column, label = _FORK_REFERENCES[name]
    text = (resources.files("uniir_cli") / "reference" / "seed_fork_mllm_results.csv").read_text()
    rows = csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#"))
    reported = {p.name: f"R{p.reported_k}" for p in EVAL_PAIRS}
    values = {}
    for row in rows:
        pair = _FORK_PAIRS[(row["task_type"], row["dataset"])]
        if row["metric"] == reported[pair]:
            values[pair] = round(100.0 * float(row[column]), 2)
    return Column(label, values)


def reference_columns(model_name: str, pool: str) -> list[Column]:
    """Published numbers for this model (or reference name) and pool (empty for models the paper lacks)."""
    if model_name in _FORK_REFERENCES:
        return [fork_column(model_name)] if pool == "local" else []
    if model_name not in _REFERENCES:
        return []
    paper_column, released = _REFERENCES[model_name]
    columns = []
    table, label = ("mbeir_global_table2.csv", "paper T2") if pool == "global" else ("mbeir_local_table6.csv", "paper T6")
    paper = _read_reference(table)
    if paper_column in paper:
        columns.append(Column(f"{label} {paper_column}", dict(zip([p.name for p in EVAL_PAIRS], paper[paper_column]))))
    if released:
        values = _read_reference("mbeir_released_checkpoints_reproduction.csv")[f"{released}_{pool}"]
        columns.append(Column(f"released {released} (repro)", dict(zip([p.name for p in EVAL_PAIRS], values))))
    return columns


def run_column(label: str, summary: dict[str, Any], pool: str) -> Column:
    """A run's reported Recall per pair, in percent."""
    pairs = summary.get("pairs", {}).get(pool, {})
    return Column(label, {name: 100.0 * metrics["reported"] for name, metrics in pairs.items()})


@dataclass
class Table:
    pool: str
    columns: list[Column]  # runs first, then references
    runs: int
    reported_k: dict[str, int] = field(default_factory=dict)  # pair name -> k of its reported Recall

    def pairs(self) -> list[str]:
        """The pairs any run evaluated: M-BEIR's in the paper's order, then the others by name."""
        names = {name for c in self.columns[: self.runs] for name in c.values}
        return [p.name for p in EVAL_PAIRS if p.name in names] + sorted(names - set(EVAL_PAIR_BY_NAME))

    @property
    def title(self) -> str:
        """"M-BEIR local pool" when every row is an M-BEIR pair, else "local pool"."""
        mbeir = all(name in EVAL_PAIR_BY_NAME for name in self.pairs())
        return f"{'M-BEIR ' if mbeir else ''}{self.pool} pool"

    def average_label(self) -> str:
        pairs = self.pairs()
        return "Average" if pairs == [p.name for p in EVAL_PAIRS] else f"Average ({len(pairs)} pairs)"

    def rows(self) -> list[dict[str, Any]]:
        out = []
        pairs = self.pairs()
        for name in pairs:
            task_id = int(PAIR_NAME_RE.fullmatch(name)["task"])  # type: ignore[index]
            query, cand = TASKS[task_id]
            k = self.reported_k.get(name) or EVAL_PAIR_BY_NAME[name].reported_k
            row: dict[str, Any] = {
                "task": f"{PAPER_TASK[task_id]} {_side(query, 'q')}->{_side(cand, 'c')}",
                "dataset": name,
                "metric": f"R@{k}",
            }
            row.update({c.label: c.values.get(name) for c in self.columns})
            row.update(self._deltas(lambda c: c.values.get(name)))
            out.append(row)
        average: dict[str, Any] = {"task": "", "dataset": self.average_label(), "metric": ""}
        average.update({c.label: c.average(pairs) for c in self.columns})
        average.update(self._deltas(lambda c: c.average(pairs)))
        out.append(average)
        return out

    def _deltas(self, value_of: Any) -> dict[str, float | None]:
        """First run minus each reference column."""
        if not self.runs:
            return {}
        first = value_of(self.columns[0])
        deltas = {}
        for ref in self.columns[self.runs :]:
            ref_value = value_of(ref)
            deltas[f"Δ {ref.label}"] = None if first is None or ref_value is None else first - ref_value
        return deltas


def format_value(value: Any) -> str:
    """A table cell: one decimal, "–" for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        text = f"{value:.1f}"
        return "0.0" if text == "-0.0" else text
    return str(value)


def to_markdown(tables: list[Table]) -> str:
    parts = []
    for table in tables:
        rows = table.rows()
        headers = list(rows[0])
        parts.append(f"### {table.title} (Recall, %)\n")
        parts.append("| " + " | ".join(headers) + " |")
        parts.append("|" + "|".join("---" if i < 3 else "---:" for i in range(len(headers))) + "|")
        parts.extend("| " + " | ".join(format_value(row[h]) for h in headers) + " |" for row in rows)
        parts.append("")
    return "\n".join(parts)


def to_csv(tables: list[Table]) -> str:
    out = io.StringIO()
    for table in tables:
        rows = table.rows()
        writer = csv.DictWriter(out, fieldnames=["pool", *rows[0]])
        writer.writeheader()
        for row in rows:
            writer.writerow({"pool": table.pool, **{k: _csv_value(v) for k, v in row.items()}})
    return out.getvalue()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    return round(value, 2) if isinstance(value, float) else value


def to_json(tables: list[Table]) -> str:
    """Values in percent to 2 decimals, as the CSV (differences of floats would carry noise
    such as -7.600000000000001)."""
    rounded = {t.pool: [{k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()} for row in t.rows()]
               for t in tables}
    return json.dumps(rounded, indent=2)


def plot(tables: list[Table], path: str) -> None:
    """Per-pair bars of every column, one panel per pool."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UniirError("--plot needs matplotlib: pip install matplotlib") from None
    fig, axes = plt.subplots(len(tables), 1, figsize=(14, 4.5 * len(tables)), squeeze=False)
    for ax, table in zip(axes[:, 0], tables):
        pairs = table.pairs()
        metrics = {row["dataset"]: row["metric"] for row in table.rows()}
        labels = [f"{name}\n{metrics[name]}" for name in pairs] + [table.average_label()]
        width = 0.8 / max(1, len(table.columns))
        for i, column in enumerate(table.columns):
            heights = [column.values.get(name) for name in pairs] + [column.average(pairs)]
            xs = [x + i * width for x in range(len(labels))]
            bars = ax.bar(xs, [h or 0.0 for h in heights], width, label=column.label)
            for x, height, bar in zip(xs, heights, bars):
                if not height:  # a zero (or missing) value still shows: an outline and its number
                    ax.bar([x], [0.6], width, fill=False, edgecolor=bar.get_facecolor(), linewidth=1)
                    ax.annotate("–" if height is None else "0", (x, 0.6), ha="center", va="bottom", fontsize=7)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(labels))], labels, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("Recall (%)")
        ax.set_title(table.title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def scored_run(directory: Path) -> tuple[str, dict[str, Any]]:
    """A scored run's label (its folder's name) and metrics summary (`metrics/metrics.json`)."""
    run = RunDir(directory)
    run.stored_config()  # a run at all?
    if not run.metrics_json.is_file():
        raise RunDirError(f"{run.metrics_json} is missing; run `uniir score --run-dir {directory}` first")
    try:
        return run.root.name, json.loads(run.metrics_json.read_text())
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{run.metrics_json} is damaged ({exc}); rerun `uniir score --run-dir {directory}`") from None


def distinct_labels(runs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The runs with a repeated label numbered (`name #2`), so every column has its own."""
    out: list[tuple[str, dict[str, Any]]] = []
    for label, summary in runs:
        if any(label == seen for seen, _ in out):
            label = f"{label} #{len(out) + 1}"
        out.append((label, summary))
    return out


def build_tables(runs: list[tuple[str, dict[str, Any]]], model_name: str | None) -> list[Table]:
    """One table per pool that any run evaluated, with that pool's reference columns that
    have a value for at least one of the evaluated pairs."""
    pools = [p for p in ("local", "global") if any(p in summary.get("pairs", {}) for _, summary in runs)]
    reported_k = {name: k for _, summary in runs for name, k in summary.get("reported_k", {}).items()}
    tables = []
    for pool in pools:
        columns = [run_column(label, summary, pool) for label, summary in runs]
        table = Table(pool, columns, runs=len(runs), reported_k=reported_k)
        evaluated = table.pairs()
        references = reference_columns(model_name, pool) if model_name else []
        table.columns += [c for c in references if any(name in c.values for name in evaluated)]
        tables.append(table)
    return tables
