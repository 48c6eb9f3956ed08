"""Training: ELSA, Compressed ELSA and EASE (torch), their schedules, engines and evaluation.

Importing this package asks torch's CPU allocator for transparent huge pages on its large buffers
(`THP_MEM_ALLOC_ENABLE=1`, unless the environment already sets it): an ELSA step at catalogue scale
allocates and frees item-matrix-sized gradients and optimizer temporaries, and on 4 KiB pages the page
faults cost more than the arithmetic. Measured on Gowalla (40,981 items, d = 4096, 8,192 sampled outputs,
2 CPU threads): 4.0 s per NAdam step without, 2.3 s with. torch reads the setting at its first allocation,
so it has no effect when torch allocated before this import.
"""
import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
