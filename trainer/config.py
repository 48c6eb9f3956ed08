"""The one training configuration, shared by the model classes, `spidx train` and the benchmark.

Importing it does not import torch, so the CLI and the benchmark can validate options cheaply.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from spidx.errors import InputError

from .schedules import SCHEDULES

MODELS = ("elsa", "compressed-elsa", "ease")

# The validation hold-out `spidx train` makes when --val-users is not given (see `default_val_users`).
VAL_FRACTION, VAL_MIN, VAL_MAX = 0.05, 100, 1000


def default_val_users(n_users: int, test_users: int) -> int:
    """Validation users `spidx train` holds out by default: 5 % of the non-test users, within 100..1000.

    Never more than a fifth of the non-test users (small data sets keep most users for training); 0 when
    fewer than 10 would be left for validation. The validation users are disjoint from the test users
    (`spidx.evaluation.split_users`). MovieLens-100K (943 users, 200 test): 100; MovieLens-1M (6,040
    users, 1,000 test): 252; Gowalla (29,858 users, 3,000 test): 1,000.
    """
    rest = max(0, int(n_users) - int(test_users))
    n = min(VAL_MAX, max(VAL_MIN, math.ceil(VAL_FRACTION * rest)), rest // 5)
    return n if n >= 10 else 0


def default_refit(n_users: int, test_users: int, val_users: int) -> bool:
    """Whether `spidx train` retrains on every non-test user after validation: when the validation users are
    more than 5 % of the non-test users (small data sets, where the 100-user floor applies: holding them
    out costs accuracy, and training twice is cheap)."""
    return val_users > VAL_FRACTION * max(0, int(n_users) - int(test_users))


@dataclass
class TrainConfig:
    """Every training parameter of ELSA, Compressed ELSA and EASE (each model reads its own).

    Attributes
    ----------
    model : str
        'elsa', 'compressed-elsa' or 'ease'.
    dim : int
        Latent dimension d (ELSA, Compressed ELSA).
    nnz : int or None
        Compressed ELSA: non-zeros per item row k; EASE: optional row pruning to k (None = full B).
    targets : tuple of int
        Several k trained at once (overrides `nnz`): Compressed ELSA from one pruning trajectory, pruned
        EASE from one inverse.
    schedule, rewind, final_epochs
        Compressed ELSA pruning schedule, lottery-ticket rewinding, epochs at the final k (an int, or
        {k: epochs} per target: what a refit after validation trains).
    epochs, batch_size, lr, seed, max_output
        ELSA optimisation (epochs per halving for Compressed ELSA); `max_output` samples outputs.
    lam : list of float
        EASE L2 strength; several are chosen between on validation users.
    test_users, val_users : int
        Users held out by `spidx train` for `spidx evaluate` and for model selection.
    patience : int
        With validation users, ELSA training and each Compressed ELSA final phase stop once this many
        epochs in a row brought no new best validation nDCG@100 (the best epoch is kept); `epochs` and
        `final_epochs` are then maxima.
    refit : bool
        After validation (`spidx.trainer.pipeline.train_models`), retrain on every non-test user with what it
        chose (ELSA: epochs; Compressed ELSA: each k's final epochs; EASE: λ).
    """

    model: str = "compressed-elsa"
    dim: int = 4096
    nnz: int | None = 32
    targets: tuple = ()
    schedule: str = "exponential"
    rewind: bool = True
    epochs: int = 10
    final_epochs: int | dict | None = None
    batch_size: int = 256
    lr: float = 0.1
    seed: int = 42
    max_output: int | None = None
    lam: list = field(default_factory=lambda: [500.0])
    test_users: int = 0
    val_users: int = 0
    patience: int = 3
    refit: bool = False

    def validate(self) -> "TrainConfig":
        """Raise InputError naming the first invalid parameter; returns self."""
        if self.model not in MODELS:
            raise InputError(f"unknown model '{self.model}' (choose from {', '.join(MODELS)})")
        if self.schedule not in SCHEDULES:
            raise InputError(f"unknown schedule '{self.schedule}' (choose from {', '.join(SCHEDULES)})")
        for name in ("dim", "epochs", "batch_size", "patience"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name.replace('_', '-')} must be positive")
        if isinstance(self.final_epochs, dict):
            self.final_epochs = {str(int(k)): int(v) for k, v in self.final_epochs.items()}
            wanted = {str(k) for k in (tuple(self.targets) or (self.nnz,))}
            if set(self.final_epochs) != wanted or any(v <= 0 for v in self.final_epochs.values()):
                raise InputError(f"per-k final epochs need a positive count for each k in {sorted(wanted)}")
        elif self.final_epochs is not None and self.final_epochs <= 0:
            raise InputError("final-epochs must be positive")
        if self.max_output is not None and self.max_output <= 0:
            raise InputError("max-output must be positive")
        if self.nnz is not None and not 0 < self.nnz <= (self.dim if self.model != "ease" else 10**9):
            raise InputError(f"nnz must be in 1..{self.dim}, got {self.nnz}")
        limit = self.dim if self.model != "ease" else 10**9
        if self.targets and (self.model == "elsa" or any(not 0 < k <= limit for k in self.targets)):
            raise InputError(f"several --nnz values need --model compressed-elsa (each in 1..{self.dim}) or ease")
        if self.model == "compressed-elsa" and self.nnz is None and not self.targets:
            raise InputError("compressed-elsa needs --nnz")
        if not 0 < self.lr < float("inf") or not self.lam or any(not 0 < lam < float("inf") for lam in self.lam):
            raise InputError("learning rate and lambda must be positive finite numbers")
        if self.test_users < 0 or self.val_users < 0:
            raise InputError("held-out user counts cannot be negative")
        return self
