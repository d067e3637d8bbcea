"""The embedded model organisms, a model source of their own (`source`, registered with
`interp.sources` when `interp` is imported): the word-level toy organism (its data generator `data`,
its training `train`, the Reasoning-to-Defend variant `r2d`, random-weight models with its tokenizer
`random`), `organism:smollm2` (a safety LoRA on SmolLM2-135M-Instruct: `smollm2*`, `lora`), their
shipped weights (`weights/`, `paths`), the study data they bring (`provider`) and their commands
(`cli`). Nothing in `interp` or `probes` imports this package: the layer test checks it."""
