"""What a model's vocabulary can say: unknown-token rates of prompt texts, and the ordinary words
of the vocabulary (the candidates that suffix jailbreaks and attacks draw from).

A word-level model (the organism, or a user's own) maps every word it never saw to one unknown
token. Prompts written for another vocabulary then reach the model as a run of `<unk>`s, and every
number measured on them is meaningless although nothing fails. `check_known` turns that into an
error; byte-level BPE tokenizers (Llama 3, Qwen, SmolLM2) have no unknown token and always pass.
"""

from __future__ import annotations

from typing import Sequence

from interp.errors import InputError

# More unknown tokens than this and a prompt set was written for another vocabulary (a few stray
# words such as names are normal; a fifth of the text is not).
MAX_UNKNOWN = 0.20

_WORDS: dict[int, list[str]] = {}  # id(tokenizer) -> vocabulary_words (slow on 50k-token vocabularies)


def unknown_tokens(tokenizer, texts: Sequence[str]) -> tuple[int, int, list[str]]:
    """(unknown tokens, all tokens, the words that became unknown) over `texts`, tokenized as they
    are (no chat template). A tokenizer without an unknown token gives (0, n, [])."""
    unk = tokenizer.unk_token_id
    n_unk, n_all, words = 0, 0, []
    for t in texts:
        enc = tokenizer(t, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        n_all += len(ids)
        if unk is None:
            continue
        for i, (a, b) in zip(ids, enc["offset_mapping"]):
            if i == unk:
                n_unk += 1
                if len(words) < 12 and t[a:b] not in words:
                    words.append(t[a:b])
    return n_unk, n_all, words


def unknown_fraction(tokenizer, texts: Sequence[str]) -> float:
    n_unk, n_all, _ = unknown_tokens(tokenizer, texts)
    return n_unk / n_all if n_all else 0.0


def check_known(model, texts: Sequence[str], what: str, fix: str, limit: float = MAX_UNKNOWN) -> float:
    """Raise InputError when more than `limit` of the tokens of `texts` are unknown to `model`;
    returns the fraction. `what` names the prompts, `fix` says what to pass instead."""
    n_unk, n_all, words = unknown_tokens(model.tokenizer, texts)
    frac = n_unk / n_all if n_all else 0.0
    if frac > limit:
        raise InputError(
            f"{frac:.0%} of the tokens of {what} are unknown to {model.name} (e.g. {', '.join(map(repr, words[:8]))}): "
            f"these prompts were not written for its vocabulary, and every number measured on them would be "
            f"meaningless. {fix}")
    return frac


def vocabulary_words(model) -> list[str]:
    """Every ordinary token of the vocabulary as the text that, after a space, encodes back to
    exactly that token: the words an attacker can append one at a time. Special tokens, the
    unknown token, whitespace and byte fragments are left out."""
    tok = model.tokenizer
    key = id(tok)
    if key not in _WORDS:
        special = set(tok.all_special_ids)
        words: list[str] = []
        seen: set[str] = set()
        for i in range(len(tok)):
            if i in special:
                continue
            w = tok.decode([i]).strip()
            if not w or not w.isprintable() or any(c.isspace() for c in w) or w in seen or "\ufffd" in w:
                continue
            if tok(" " + w, add_special_tokens=False).input_ids == [i]:
                words.append(w)
                seen.add(w)
        _WORDS[key] = words
    return list(_WORDS[key])
