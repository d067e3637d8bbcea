"""Errors the toolkit raises on bad input: one type per kind of mistake, each with a message
that says what is wrong and what to do."""


class SafetyHeadsError(Exception):
    """Base class: every error the toolkit raises on purpose derives from it."""


class InputError(SafetyHeadsError, ValueError):
    """Bad arguments or data: empty sets, mismatched lengths, out-of-range indices, NaNs."""


class ModelLoadError(SafetyHeadsError, OSError):
    """A model or tokenizer could not be loaded (missing files, offline hub name, no chat template)."""


class ArtifactError(SafetyHeadsError, ValueError):
    """A saved artifact does not fit the model or the request it is used for."""


class NonFiniteError(SafetyHeadsError, FloatingPointError):
    """The model produced NaN or infinite logits or scores (usually an intervention far too strong)."""
