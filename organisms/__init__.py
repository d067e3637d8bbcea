"""The embedded model organism: its data generator (`data`), its training (`train`, and the
Reasoning-to-Defend variant in `r2d`), random-weight models with its tokenizer (`random`), and
`provider.organism_study()`, which hands its prompts to a study as `interp.study.StudyData`.
Analysis code never imports this package: it takes the study's data."""
