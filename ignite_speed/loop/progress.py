"""Loop progress counters, with Lightning's meanings (see the docs' "counting" section).

Ignite's ``state.iteration`` counts batches over the run and ``state.epoch`` epochs started; the
counters here add what Lightning users count with: optimizer steps (``global_step``), the batch index
inside the current epoch, and completed epochs. They are plain data so that they checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Progress"]


@dataclass
class Progress:
    epoch: int = 0  # 0-based index of the epoch being trained (== epochs_done between epochs)
    epochs_done: int = 0  # epochs whose end processing completed (a partly run epoch counts once it ends)
    batch_in_epoch: int = 0  # batches fetched in the current epoch (1-based after the first batch)
    total_batches: int = 0  # batches fetched over the run
    global_step: int = 0  # optimizer steps (batches / accumulate_grad_batches, last batch of an epoch steps)
    val_runs: int = 0  # completed validation runs during training (the sanity check excluded)

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if hasattr(self, key):
                setattr(self, key, int(value))
