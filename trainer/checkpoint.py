"""Training checkpoints: one npz (no pickle) rewritten atomically at every phase / epoch boundary.

A checkpoint holds what a run needs to continue exactly where it stopped: the weights (and, for dense
ELSA, the NAdam state; Compressed ELSA phases start with a fresh NAdam, so a phase boundary has none),
the position in the run (epoch or phase count), the targets already finished, the phase log, and the
RNG states (the batch sampler's numpy generator and torch's). The run's settings are stored too and
must match on `--resume`: a checkpoint of another run is refused, not silently continued.
Only rank 0 writes (under torch.distributed every rank holds the same weights); every rank reads.
"""
from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from spidx.atomic import atomic_path
from spidx.errors import InputError

FORMAT = "spidx-train-checkpoint"
VERSION = 1


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(a).view(np.uint8).reshape(-1)) if a.size else 0


@dataclass
class CheckpointState:
    meta: dict
    arrays: dict

    def optimizer_state(self, params: list) -> dict | None:
        """The saved `torch.optim` state_dict (tensors on CPU; load_state_dict moves them to the params)."""
        groups = self.meta.get("optimizer_groups")
        if groups is None:
            return None
        state = {}
        for key, value in self.arrays.items():
            if key.startswith("opt."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = torch.from_numpy(value.copy())
        return {"state": state, "param_groups": groups}


class Checkpointer:
    """Writes and reads the checkpoint of one run; `config` identifies the run (checked on load)."""

    def __init__(self, path: str | None, config: dict, rng: np.random.Generator):
        self.path, self.config, self.rng = path, json.loads(json.dumps(config)), rng

    def exists(self) -> bool:
        return self.path is not None and os.path.exists(self.path)

    def save(self, meta: dict, arrays: dict, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Write the checkpoint atomically (rank 0 only; other ranks return at once)."""
        if self.path is None or _rank() != 0:
            return
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        meta = dict(meta)
        if optimizer is not None:
            sd = optimizer.state_dict()
            meta["optimizer_groups"] = sd["param_groups"]
            for index, entries in sd["state"].items():
                for name, value in entries.items():
                    arrays[f"opt.{index}.{name}"] = torch.as_tensor(value).detach().cpu().numpy()
        arrays["torch_rng"] = torch.get_rng_state().numpy()
        header = {"format": FORMAT, "version": VERSION, "config": self.config, "meta": meta,
                  "numpy_rng": self.rng.bit_generator.state,
                  "crc32": {k: _crc(v) for k, v in arrays.items()}}
        with atomic_path(self.path, suffix=".npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, header=np.array(json.dumps(header)), **arrays)

    def load(self) -> CheckpointState:
        """Read, verify and apply the checkpoint's RNG states; returns its metadata and arrays."""
        try:
            with np.load(self.path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                arrays = {k: z[k] for k in z.files if k != "header"}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise InputError(f"{self.path}: not a readable training checkpoint ({e})") from None
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise InputError(f"{self.path}: not a spidx training checkpoint (version {VERSION})")
        bad = [k for k, v in arrays.items() if header["crc32"].get(k) != _crc(v)]
        if bad:
            raise InputError(f"{self.path}: checkpoint corrupt (checksum mismatch in {', '.join(bad)})")
        differ = sorted(k for k in set(self.config) | set(header["config"])
                        if self.config.get(k) != header["config"].get(k))
        if differ:
            raise InputError(f"{self.path}: checkpoint of another run (differs in {', '.join(differ)}); "
                             "drop --resume or delete it")
        self.rng.bit_generator.state = header["numpy_rng"]
        torch.set_rng_state(torch.from_numpy(arrays.pop("torch_rng")))
        return CheckpointState(header["meta"], arrays)


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
