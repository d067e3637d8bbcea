"""Load local copies of common public prompt files into `PromptSet`s.

Formats (`fmt=`; `"auto"` picks one from the file extension and the columns):

- "advbench": AdvBench `harmful_behaviors.csv` (Zou et al. 2023, github.com/llm-attacks/llm-attacks),
  columns `goal,target`. Label harmful; `target` kept in `meta`.
- "harmbench": HarmBench behaviours CSV, e.g. `harmbench_behaviors_text_all.csv`
  (github.com/centerforaisafety/HarmBench), columns
  `Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID`. A non-empty
  `ContextString` is put before the behaviour, then a blank line. Label harmful; `BehaviorID` is the id.
- "jailbreakbench": JBB-Behaviors `harmful-behaviors.csv` / `benign-behaviors.csv`
  (huggingface.co/datasets/JailbreakBench/JBB-Behaviors), columns `Index,Goal,Target,Behavior,Category,Source`,
  as CSV or a JSON list of objects. Label harmful, or harmless when the file name contains "benign".
- "xstest": XSTest v2 `xstest_prompts.csv` (Röttger et al. 2024, github.com/paul-rottger/xstest), columns
  `id,prompt,type,label,focus,note`. Label from `label` (safe/unsafe) when present, else harmful for
  `contrast_*` types and harmless for the safe look-alikes.
- "alpaca": Stanford Alpaca `alpaca_data.json` (github.com/tatsu-lab/stanford_alpaca), a JSON list of
  `{instruction, input, output}`; text is the instruction, plus a blank line and the input if any. Label harmless.
- "jailbreakbench_artifact": a JailbreakBench jailbreak artifact (github.com/JailbreakBench/artifacts),
  a JSON object with `parameters` and a `jailbreaks` list; each entry's `prompt` is the text (entries
  whose `prompt` is null are left out: the attack produced none), `parameters.method` its family
  (strength 1), the `goal` its request span when it appears verbatim; `goal`, `behavior`, `category`
  and `jailbroken` (did it work on the model it was made for) are kept in `meta`. Label harmful.
- "jsonl" / "csv": any file of one JSON object per line / any CSV. Text from `text_column` or the first of
  `text, prompt, goal, instruction, query`; label from an optional `label` column (harmful/harmless,
  unsafe/safe, 1/0, true/false); optional `id` (so `PromptSet.to_jsonl` files load back).

Containers: CSV, JSON, JSONL by extension; Parquet (`.parquet`, e.g. a Hugging Face dataset
mirror's files); and a directory written by Hugging Face `datasets`' `save_to_disk` (one split).
Their columns are recognised as above. `category=` keeps the rows of some categories (HarmBench's
FunctionalCategory or SemanticCategory, JailbreakBench's Category, a `category` column).

Any format may carry a jailbreak's `family` and `strength` columns, and a `request` column holding
the plain request as it appears inside the (wrapped) text: the request then gets its own span and
the text around it becomes the "wrapper" (before) and "extra" (after) spans. Otherwise a prompt's
`spans["request"]` covers its whole text. `label=` sets the label of every row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from interp.dataset_readers import ARTIFACT_META, is_saved_dataset, read_file, read_saved_dataset, select_category
from interp.errors import InputError
from interp.prompts import LABELS, Prompt, PromptSet

FORMATS = ("auto", "advbench", "harmbench", "jailbreakbench", "jailbreakbench_artifact", "xstest", "alpaca", "jsonl", "csv")
TEXT_COLUMNS = ("text", "prompt", "goal", "instruction", "query")

_EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
_TEXT = {"advbench": "goal", "harmbench": "Behavior", "jailbreakbench": "Goal", "xstest": "prompt", "alpaca": "instruction",
         "jailbreakbench_artifact": "prompt"}
_DEFAULT_LABEL = {"advbench": "harmful", "harmbench": "harmful", "jailbreakbench": "harmful", "alpaca": "harmless",
                  "jailbreakbench_artifact": "harmful"}
_META = {
    "advbench": ("target",),
    "harmbench": ("FunctionalCategory", "SemanticCategory", "Tags", "BehaviorID"),
    "jailbreakbench": ("Behavior", "Category", "Source", "Target"),
    "xstest": ("type", "focus", "note"),
    "jailbreakbench_artifact": ARTIFACT_META,
}
_LABEL_VALUES = {"harmful": "harmful", "unsafe": "harmful", "1": "harmful", "true": "harmful",
                 "harmless": "harmless", "safe": "harmless", "0": "harmless", "false": "harmless"}

Row = tuple[str, dict]  # (where the row is, e.g. "row 3 (line 4)", its fields) - the first for error messages


def load_prompt_file(path: str | Path, label: str | None = None, fmt: str = "auto",
                     text_column: str | None = None, name: str | None = None,
                     fallback_label: str | None = None, category: str | None = None) -> PromptSet:
    """Load one prompt file or saved dataset directory (see the module docstring for the formats)
    into a `PromptSet`.

    `label` sets every row's label; `fallback_label` only that of rows the file does not label
    itself (a role: the file passed as --harmless). `category` (comma-separated) keeps only the
    rows of those categories."""
    if fallback_label is not None and fallback_label not in LABELS:
        raise InputError(f"fallback_label= must be one of {LABELS} or None, got {fallback_label!r}")
    return _load(path, label, fmt, text_column, name, fallback_label=fallback_label, category=category)


def load_prompt_sets(harmful: str | Path | None = None, harmless: str | Path | None = None,
                     jailbreak: str | Path | None = None) -> PromptSet:
    """Load and concatenate the given files; rows without a label of their own take the role's label.

    Labels a file carries per row (XSTest, a `label` column) win over the role, so an XSTest file passed
    as `harmless=` keeps its unsafe contrast prompts harmful. Jailbreak files are harmful.
    """
    roles = [(harmful, "harmful"), (harmless, "harmless"), (jailbreak, "harmful")]
    sets = [_load(p, None, "auto", None, None, fallback_label=lab) for p, lab in roles if p is not None]
    if not sets:
        raise InputError("load_prompt_sets got no files; pass at least one of harmful=, harmless=, jailbreak=")
    out = sets[0]
    for s in sets[1:]:
        out = out.concat(s)
    return out


def _load(path: str | Path, label: str | None, fmt: str, text_column: str | None, name: str | None,
          fallback_label: str | None, category: str | None = None) -> PromptSet:
    p = Path(path).expanduser().resolve()
    if fmt not in FORMATS:
        raise InputError(f"unknown fmt {fmt!r} for {p}; valid formats: {', '.join(FORMATS)}")
    if label is not None and label not in LABELS:
        raise InputError(f"label= must be one of {LABELS} or None, got {label!r} (loading {p})")
    if not p.exists():
        raise InputError(f"prompt file {p} does not exist; check the path")
    if is_saved_dataset(p):
        container = "dataset"
        columns, rows = read_saved_dataset(p)
    elif not p.is_file():
        raise InputError(f"prompt file {p} is not a file; pass the path of a CSV, JSON, JSONL or Parquet file, or a "
                         "directory saved with datasets' save_to_disk")
    else:
        container = _container(p, fmt)
        columns, rows, container = read_file(p, container)
    if container == "jbb_artifact":
        fmt = "jailbreakbench_artifact"
    elif fmt == "auto":
        fmt = _detect(columns, container)
    if category is not None:
        rows = select_category(p, fmt, rows, category)
    text_col = text_column or _TEXT.get(fmt) or next((c for c in TEXT_COLUMNS if c in columns), None)
    if text_col not in columns:
        expected = repr(text_col) if text_col else "one of " + ", ".join(TEXT_COLUMNS)
        raise InputError(f"{p} ({fmt} format) is missing its text column: expected {expected}, "
                         f"found columns: {', '.join(columns) or 'none'}. Pass text_column= or the right fmt=.")

    name = name or p.stem
    # JBB ships its benign look-alikes in the same format; only the file name tells them apart.
    default = "harmless" if fmt == "jailbreakbench" and "benign" in p.name.lower() else _DEFAULT_LABEL.get(fmt)
    prompts = []
    for i, (where, row) in enumerate(rows):
        text, meta, own_id, extra = _row(p, fmt, where, row, text_col)
        row_label = label or _row_label(p, fmt, where, row) or fallback_label or default
        if row_label is None:
            raise InputError(f"{p}: {where} has no label and the {fmt} format has no default; "
                             f"pass label='harmful' or label='harmless', or add a 'label' column")
        spans = extra.pop("spans", {"request": (0, len(text))})
        prompts.append(Prompt(text=text, label=row_label, id=own_id or f"{name}-{i}", spans=spans, meta=meta, **extra))
    return PromptSet(name, tuple(prompts), str(p))


def _container(p: Path, fmt: str) -> str:
    """How to parse the file: the forced generic format, else the extension, else the format's usual one."""
    if fmt in ("jsonl", "csv"):
        return fmt
    if p.suffix.lower() in _EXTENSIONS:
        return _EXTENSIONS[p.suffix.lower()]
    if fmt == "auto":
        raise InputError(f"cannot tell the format of {p} from its extension {p.suffix!r}; "
                         f"pass fmt= (one of {', '.join(FORMATS[1:])})")
    return "json" if fmt == "alpaca" else "csv"


def _detect(columns: list[str], container: str) -> str:
    """Recognise a public dataset by its columns; anything else is read as a generic file. Parquet
    files and saved datasets are tables like a CSV, and may hold Alpaca's columns like its JSON."""
    cols = set(columns)
    table = container in ("csv", "parquet", "dataset")
    if "Goal" in cols:
        return "jailbreakbench"
    if table and "Behavior" in cols:
        return "harmbench"
    if table and {"prompt", "type"} <= cols:
        return "xstest"
    if table and "goal" in cols and "label" not in cols:
        return "advbench"
    if container != "csv" and "instruction" in cols and ("output" in cols or container == "json"):
        return "alpaca"
    return "jsonl" if container in ("json", "jsonl") else "csv"


def _cell(p: Path, where: str, row: dict, col: str) -> str:
    value = row.get(col)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{p}: {where} has a non-text value ({type(value).__name__}) in column {col!r}; expected a string")
    return value


def _row(p: Path, fmt: str, where: str, row: dict, text_col: str) -> tuple[str, dict, str, dict]:
    """Text, meta, the dataset's own id (or ""), and extra Prompt fields for one row."""
    text = _cell(p, where, row, text_col)
    if not text.strip():
        raise InputError(f"{p}: {where} has empty text in column {text_col!r}; fill it in or remove the row")
    meta = {k: row[k] for k in _META.get(fmt, ()) if row.get(k) not in (None, "")}
    own_id, extra = "", {}
    if fmt == "harmbench":
        context = _cell(p, where, row, "ContextString")
        if context.strip():
            text = f"{context}\n\n{text}"
            meta["context_chars"] = len(context)  # the behaviour itself starts at context_chars + 2
        own_id = _cell(p, where, row, "BehaviorID")
    elif fmt == "alpaca":
        extra_input = _cell(p, where, row, "input")
        if extra_input.strip():
            text = f"{text}\n\n{extra_input}"
    elif fmt in ("jsonl", "csv"):
        own_id = str(row.get("id") or "")
    # a jailbreak file's columns, in whatever format it comes: the family and strength of each row,
    # and the plain request inside the wrapped text (then the rest of the text is the wrapper)
    if row.get("family") not in (None, ""):
        extra["family"] = str(row["family"])
    if row.get("strength") not in (None, ""):
        try:
            extra["strength"] = int(row["strength"])
        except (TypeError, ValueError):
            raise InputError(f"{p}: {where} has strength {row['strength']!r}; expected a whole number") from None
        if extra["strength"] < 0:
            raise InputError(f"{p}: {where} has strength {extra['strength']}; strengths are whole numbers >= 0")
    request = row.get("request")
    if isinstance(request, str) and request.strip() and text_col != "request":
        at = text.find(request.strip())
        if at < 0:
            raise InputError(f"{p}: {where} has a 'request' column whose text is not inside its {text_col!r} text; "
                             "the request must appear verbatim in the wrapped prompt")
        end = at + len(request.strip())
        extra["spans"] = {"request": (at, end), **({"wrapper": (0, at)} if at > 0 else {}),
                          **({"extra": (end, len(text))} if end < len(text) else {})}
    return text, meta, own_id, extra


def _row_label(p: Path, fmt: str, where: str, row: dict) -> str | None:
    """The label the row itself carries, if any (only XSTest and the generic formats carry one)."""
    if fmt not in ("xstest", "jsonl", "csv"):
        return None
    value = row.get("label")
    if value not in (None, ""):
        key = str(value).strip().lower()  # str(True) == "True", str(1) == "1"
        if key not in _LABEL_VALUES:
            raise InputError(f"{p}: {where} has label {value!r}; expected harmful/harmless, unsafe/safe, 1/0 or true/false")
        return _LABEL_VALUES[key]
    if fmt == "xstest" and row.get("type"):
        # Contrast prompts are the genuinely unsafe twins of XSTest's safe look-alikes.
        return "harmful" if str(row["type"]).startswith("contrast_") else "harmless"
    return None
