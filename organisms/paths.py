"""Where the shipped organisms live (package data: `weights/<variant>/`)."""

from pathlib import Path

ORGANISM_DIR = Path(__file__).parent / "weights"
ORGANISM_VARIANTS = ("gqa", "mha", "r2d")  # the word-level toy organisms (organism:smollm2 is an adapter: smollm2_weights)
R2D_DIR = ORGANISM_DIR / "r2d"  # the shipped R2D organism; `safety-heads r2d eval --save-measured` writes beside it
SMOLLM2_R2D_DIR = ORGANISM_DIR / "smollm2-r2d"  # organism:smollm2-r2d, an r2d:DIR adapter directory (organisms.smollm2_r2d)
SMOLLM2_R2D_BUILD = "python -m organisms.smollm2_r2d --out organisms/weights/smollm2-r2d --threads 1"
