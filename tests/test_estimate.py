"""The line every command prints before its first forward pass: the counts are the passes the
toolkit will make, and the estimate grows with what is asked of the model."""

from __future__ import annotations

from interp.batching import prompt_chunks
from interp.estimate import announce, estimate


def test_estimate_counts_what_generation_will_run(organism, eval_prompts, capsys):
    est = estimate(organism, eval_prompts, new_tokens=12, batch_size=64)
    lengths = organism.token_lengths(eval_prompts)
    chunks = prompt_chunks(organism, eval_prompts.texts, 64)
    assert est.prompts == len(eval_prompts) and est.prompt_tokens == sum(lengths) and est.passes == len(chunks)
    assert est.padded_tokens == sum(len(c) * max(lengths[i] for i in c) for c in chunks) >= est.prompt_tokens
    more = estimate(organism, eval_prompts, new_tokens=48, batch_size=64)
    fewer = estimate(organism, eval_prompts.filter(label="harmful"), new_tokens=12, batch_size=64)
    assert more.seconds > est.seconds > fewer.seconds > 0
    line = announce(organism, eval_prompts, "eval", new_tokens=12)
    err = capsys.readouterr().err
    assert err.startswith(f"safety-heads: eval: {len(eval_prompts)} prompts ({line.prompt_tokens} tokens")
    assert "estimated" in err and "GFLOP/s" in err and err.count("\n") == 1
