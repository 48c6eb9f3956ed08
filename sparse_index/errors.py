"""Error type for bad user input: the CLI prints its message as one line and exits non-zero."""


class InputError(ValueError):
    """Bad input (missing or corrupt file, wrong shape, unknown id, k <= 0, NaN...)."""


class TrainingDiverged(InputError):
    """Training produced a non-finite loss or parameters, or item rows lost all their non-zeros
    (usually a learning rate far too high); nothing is written."""
