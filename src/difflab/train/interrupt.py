"""Ctrl-C (SIGINT) or SIGTERM during training asks the loop to stop after the current step, so that the metrics log,
the loss plot and the checkpoint all end at the same step; a second signal stops at once."""
from __future__ import annotations

import signal
import sys
import threading


class Interrupted(KeyboardInterrupt):
    """Stopped by the user; the message says what was kept and how to go on."""

    def __init__(self, message: str, result: object = None):
        super().__init__(message)
        self.message, self.result = message, result  # result: the TrainResult when training was stopped


class StopRequest:
    """A context in which the first SIGINT / SIGTERM sets `.requested` instead of raising or killing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, say: bool = True):
        self.requested, self.say, self._old = False, say, {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for s in self.SIGNALS:
                self._old[s] = signal.getsignal(s)
                signal.signal(s, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:
        self.requested = True
        for s, old in self._old.items():  # a second signal acts as it would have
            signal.signal(s, old if old is not None else signal.SIG_DFL)
        if self.say:
            sys.stderr.write(f"\n{signal.Signals(signum).name}: stopping after this step and saving a checkpoint "
                             "(press Ctrl-C again to stop at once)\n")

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)
