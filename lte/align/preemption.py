"""Checkpoint on pre-emption: SIGUSR1 -> save `checkpoint-N` at the end of the current step, stop.

`slurm/align.sh` sends SIGUSR1 to every training process when Slurm warns that the job's time is
nearly up (or that it is being pre-empted), then requeues the job; the requeued job passes
`--resume` and continues at step N, instead of losing everything since the last `save_steps`
checkpoint. Under ZeRO-3 saving is collective, so the ranks first agree (any rank signalled ->
all save), at a step boundary that every rank reaches.
"""

from __future__ import annotations

import logging
import signal

from lte.align import distributed as dist

log = logging.getLogger("lte.align")

SIGNAL = signal.SIGUSR1


def make_callback():
    """A TrainerCallback that saves and stops after SIGUSR1; `.stopped_at` is then the step."""
    from transformers import TrainerCallback

    class PreemptionCheckpoint(TrainerCallback):
        def __init__(self):
            self.signalled = False
            self.stopped_at: int | None = None
            self._previous = None

        def _on_signal(self, signum, frame):
            self.signalled = True

        def on_train_begin(self, args, state, control, **kw):
            try:
                self._previous = signal.signal(SIGNAL, self._on_signal)
            except ValueError:  # not the main thread (an embedding application): no handler
                self._previous = None

        def on_step_end(self, args, state, control, **kw):
            if dist.any_rank(self.signalled):
                self.stopped_at = state.global_step
                control.should_save = True
                control.should_training_stop = True
                if dist.is_main():
                    log.warning("pre-emption signal: saving checkpoint-%d and stopping",
                                state.global_step)
            return control

        def on_train_end(self, args, state, control, **kw):
            if self._previous is not None:
                signal.signal(SIGNAL, self._previous)
                self._previous = None

    return PreemptionCheckpoint()
