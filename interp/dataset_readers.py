"""Readers for the containers prompt data comes in, and the filters a study applies to what they
hold (`interp.datasets` turns their rows into `PromptSet`s).

* CSV, JSON (a list of objects) and JSONL text files.
* Parquet files (what Hugging Face dataset mirrors serve), read with pyarrow.
* A directory written by Hugging Face `datasets`' `save_to_disk` (one `Dataset`; a
  `DatasetDict` directory holds one such directory per split).
* JailbreakBench's jailbreak artifacts: a JSON object whose `jailbreaks` list holds, per behaviour,
  the attack's `prompt`, the plain `goal`, its `behavior` and `category`, and `jailbroken` (whether
  the attack worked on the model it was made for); `parameters.method` names the attack.
* `select_category`: keep the rows of some categories (HarmBench's FunctionalCategory or
  SemanticCategory, JailbreakBench's Category).
* `subsample_per_label`: a seeded, balanced subsample of at most N prompts per label.
"""

from __future__ import annotations

import csv
import io
import json
import random
import sys
from pathlib import Path

from interp.errors import InputError
from interp.prompts import LABELS, PromptSet

Row = tuple[str, dict]  # (where the row is, its fields), as in interp.datasets

# the files `save_to_disk` writes: a Dataset directory, or a DatasetDict directory of split folders
DATASET_FILES = ("state.json", "dataset_info.json")
DATASET_DICT_FILE = "dataset_dict.json"
# per format, the columns whose values --category selects
CATEGORY_COLUMNS = {"harmbench": ("FunctionalCategory", "SemanticCategory"), "jailbreakbench": ("Category",),
                    "jailbreakbench_artifact": ("category",)}
ARTIFACT_META = ("goal", "behavior", "category", "jailbroken", "index", "number_of_queries")


def read_file(p: Path, container: str) -> tuple[list[str], list[Row], str]:
    """Parse the file into (column names, rows, container): a JSON file holding a JailbreakBench
    artifact comes back as container "jbb_artifact"."""
    if container == "parquet":
        return (*read_parquet(p), container)
    try:
        text = p.read_text(encoding="utf-8-sig")  # -sig: spreadsheet exports often start with a BOM
    except UnicodeDecodeError as e:
        raise InputError(f"{p} is not UTF-8 text ({e.reason} at byte {e.start}); re-save it as UTF-8") from None
    if not text.strip():
        raise InputError(f"prompt file {p} is empty; it needs at least one prompt")

    if container == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        rows: list[Row] = []
        try:
            columns = list(reader.fieldnames or [])
            for n, rec in enumerate(reader, 1):
                if None in rec:  # DictReader files surplus fields under None: the row does not fit the header
                    raise InputError(f"{p}: row {n} (line {reader.line_num}) has more fields than the header's "
                                     f"{len(columns)}; check its quoting")
                rows.append((f"row {n} (line {reader.line_num})", rec))
        except csv.Error as e:
            raise InputError(f"{p} is not valid CSV (line {reader.line_num}: {e}); check its quoting") from None
    elif container == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{p} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
                             f"if it holds one object per line, pass fmt='jsonl'") from None
        if is_jbb_artifact(data):
            columns, rows, skipped = jbb_artifact_rows(p, data)
            if skipped:
                print(f"safety-heads: {p.name}: {skipped} of {len(data['jailbreaks'])} jailbreaks have no prompt (the "
                      "attack produced none) and are left out", file=sys.stderr)
            return columns, rows, "jbb_artifact"
        if not isinstance(data, list):
            raise InputError(f"{p} holds a JSON {type(data).__name__}; expected a list of objects, one per prompt "
                             "(or a JailbreakBench artifact: an object with a 'jailbreaks' list)")
        rows = [(f"row {n}", obj) for n, obj in enumerate(data, 1)]
    else:
        rows = []
        for n, line in enumerate(text.split("\n"), 1):  # not splitlines(): it also splits on U+2028 inside strings
            if not line.strip():
                continue
            try:
                rows.append((f"line {n}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise InputError(f"{p}: line {n} is not valid JSON ({e.msg}); each line must hold one JSON object") from None
    if container != "csv":
        for where, obj in rows:
            if not isinstance(obj, dict):
                raise InputError(f"{p}: {where} is a JSON {type(obj).__name__}, not an object with named fields")
        columns = list(dict.fromkeys(k for _, obj in rows for k in obj))  # union of keys, in first-seen order
    if not rows:
        raise InputError(f"{p} has no rows; it needs at least one prompt")
    return columns, rows, container


def is_saved_dataset(p: Path) -> bool:
    """True for a directory `datasets.Dataset.save_to_disk` (or `DatasetDict.save_to_disk`) wrote."""
    return p.is_dir() and (all((p / f).exists() for f in DATASET_FILES) or (p / DATASET_DICT_FILE).exists())


def _records(table_rows: list, p: Path) -> tuple[list[str], list[Row]]:
    rows = [(f"row {n}", dict(r)) for n, r in enumerate(table_rows, 1)]
    if not rows:
        raise InputError(f"{p} has no rows; it needs at least one prompt")
    return list(dict.fromkeys(k for _, r in rows for k in r)), rows


def read_parquet(p: Path) -> tuple[list[str], list[Row]]:
    """Column names and rows of a Parquet file."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(p)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError on a file that is not Parquet
        raise InputError(f"{p} is not a readable Parquet file ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
                         "check the file, or give it the extension of its real format") from None
    return _records(table.to_pylist(), p)


def read_saved_dataset(p: Path) -> tuple[list[str], list[Row]]:
    """Column names and rows of a `save_to_disk` directory holding one split."""
    if (p / DATASET_DICT_FILE).exists():
        splits = json.loads((p / DATASET_DICT_FILE).read_text()).get("splits", [])
        raise InputError(f"{p} is a DatasetDict with splits {splits}; pass one split's folder, e.g. "
                         f"{p / (splits[0] if splits else 'train')}")
    from datasets import load_from_disk

    try:
        ds = load_from_disk(str(p))
    except Exception as e:
        raise InputError(f"{p} could not be read as a dataset saved with save_to_disk ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160]}); save it again with Dataset.save_to_disk") from None
    return _records(ds.to_list(), p)


def is_jbb_artifact(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("jailbreaks"), list)


def jbb_artifact_rows(p: Path, data: dict) -> tuple[list[str], list[Row], int]:
    """Rows of a JailbreakBench artifact, one per behaviour the attack produced a prompt for, and
    how many entries had none (`prompt` null: the attack gave up; nothing to run)."""
    method = str((data.get("parameters") or {}).get("method") or p.stem)
    rows: list[Row] = []
    skipped = 0
    for n, entry in enumerate(data["jailbreaks"], 1):
        if not isinstance(entry, dict):
            raise InputError(f"{p}: jailbreaks[{n - 1}] is a JSON {type(entry).__name__}, not an object with a 'prompt'")
        if entry.get("prompt") in (None, ""):
            skipped += 1
            continue
        row = {k: entry[k] for k in ARTIFACT_META if entry.get(k) is not None}
        row.update(prompt=entry["prompt"], family=method, strength=1)
        if isinstance(entry.get("goal"), str) and entry["goal"].strip() and entry["goal"].strip() in str(entry["prompt"]):
            row["request"] = entry["goal"]  # the plain request inside the attack's text: its own span
        rows.append((f"jailbreaks[{n - 1}]", row))
    if not rows:
        raise InputError(f"{p}: none of its {len(data['jailbreaks'])} jailbreaks has a prompt; the artifact holds "
                         "nothing to run")
    return list(dict.fromkeys(k for _, r in rows for k in r)), rows, skipped


def select_category(p: Path, fmt: str, rows: list[Row], categories: str | list[str]) -> list[Row]:
    """The rows whose category (see CATEGORY_COLUMNS) is one of `categories` (comma-separated)."""
    wanted = [c.strip() for c in (categories.split(",") if isinstance(categories, str) else categories) if c.strip()]
    cols = CATEGORY_COLUMNS.get(fmt, ("category",))
    present = [c for c in cols if any(c in r for _, r in rows)]
    if not wanted:
        raise InputError("--category is empty; pass one or more comma-separated categories")
    if not present:
        raise InputError(f"{p} ({fmt} format) has no category column ({' or '.join(cols)}); --category applies to "
                         "HarmBench, JailbreakBench and files with a 'category' column")
    keep = [(w, r) for w, r in rows if any(str(r.get(c, "")).strip().lower() in {x.lower() for x in wanted} for c in present)]
    if not keep:
        have = sorted({str(r[c]) for _, r in rows for c in present if r.get(c) not in (None, "")})
        raise InputError(f"{p}: no row has category {', '.join(wanted)} (in {', '.join(present)}); its categories: "
                         f"{', '.join(have[:20])}{' ...' if len(have) > 20 else ''}")
    return keep


def subsample_per_label(prompts: PromptSet, n: int, seed: int) -> tuple[PromptSet, dict]:
    """At most `n` prompts of each label, drawn with a generator seeded by (`seed`, label) and kept
    in file order; returns the subsample and, per label, how many were kept of how many."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"--max-per-label must be an integer of at least 1, got {n!r}")
    keep: set[int] = set()
    counts = {}
    for label in LABELS:
        idx = [i for i, p in enumerate(prompts) if p.label == label]
        chosen = idx if len(idx) <= n else random.Random(f"{seed}/max_per_label/{label}").sample(idx, n)
        keep.update(chosen)
        if idx:
            counts[label] = {"kept": len(chosen), "of": len(idx)}
    return PromptSet(prompts.name, tuple(p for i, p in enumerate(prompts) if i in keep), prompts.source), counts
