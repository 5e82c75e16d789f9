"""Console progress, TensorBoard scalars and the training-curve plot of a run."""

from __future__ import annotations

import pathlib
import time
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from absl import logging


def format_duration(seconds: float) -> str:
    """Format seconds as '1h02m', '3m05s' or '12s'."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Progress:
    """Logs training and evaluation metrics with rate and ETA, to the console and TensorBoard.

    Only process 0 logs and writes event files. The rate counts steps since the
    previous log line, so the first line includes compilation and later lines do not.
    """

    def __init__(self, logdir: pathlib.Path, *, total_steps: int, start_step: int,
                 steps_per_epoch: int, global_batch_size: int):
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.global_batch_size = global_batch_size
        self._last_step = start_step
        self._last_time = time.monotonic()
        self._writer = None
        self._is_main = jax.process_index() == 0
        if self._is_main:
            # Imported here so that importing fat_jax.train does not load TensorFlow.
            from flax.metrics import tensorboard
            self._writer = tensorboard.SummaryWriter(str(logdir))

    def train(self, step: int, metrics: Mapping[str, float]) -> None:
        """Log the mean training metrics of the steps since the previous call."""
        now = time.monotonic()
        steps = max(step - self._last_step, 1)
        rate = steps / max(now - self._last_time, 1e-9)
        eta = (self.total_steps - step) / rate
        self._last_step, self._last_time = step, now
        if not self._is_main:
            return
        lr = ", ".join(f"{k.split('/', 1)[1]} {v:.3g}" for k, v in metrics.items()
                       if k.startswith("lr/"))
        logging.info(
            "step %d/%d (epoch %.2f): loss %.4f, top-1 %.2f%%, top-5 %.2f%%, lr [%s] | "
            "%.2f steps/s, %.0f images/s, ETA %s",
            step, self.total_steps, step / self.steps_per_epoch, metrics["loss"],
            100 * metrics["top1"], 100 * metrics["top5"], lr, rate,
            rate * self.global_batch_size, format_duration(eta))
        self._scalars("train", step, metrics)
        self._scalars("train", step, {"steps_per_second": rate})

    def evaluate(self, step: int, epoch: int, metrics: Mapping[str, float]) -> None:
        if not self._is_main:
            return
        logging.info("eval after epoch %d (step %d): loss %.4f, top-1 %.2f%%, top-5 %.2f%% on"
                     " %d examples", epoch, step, metrics["loss"], 100 * metrics["top1"],
                     100 * metrics["top5"], metrics["count"])
        self._scalars("eval", step, {k: v for k, v in metrics.items() if k != "count"})

    def layers(self, step: int, stats: Mapping[str, Mapping[str, float]]) -> None:
        """Write per-layer alphas and mask min/mean/max to TensorBoard."""
        for layer, values in stats.items():
            self._scalars(f"layers/{layer}", step, values)

    def _scalars(self, prefix: str, step: int, values: Mapping[str, float]) -> None:
        if self._writer is None:
            return
        for key, value in values.items():
            self._writer.scalar(f"{prefix}/{key}", float(value), step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()


def plot_curves(path: pathlib.Path, train_history: Sequence[Mapping[str, float]],
                eval_history: Sequence[Mapping[str, float]], title: str) -> pathlib.Path:
    """Plot training loss and evaluation top-1 against epochs into a PNG file."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, top1_axis) = plt.subplots(1, 2, figsize=(10, 4))
    if train_history:
        loss_axis.plot([h["epoch"] for h in train_history], [h["loss"] for h in train_history])
    loss_axis.set(xlabel="epoch", ylabel="training loss", yscale="log", title="Training loss")
    if eval_history:
        epochs = [h["epoch"] for h in eval_history]
        top1 = [100 * h["top1"] for h in eval_history]
        top1_axis.plot(epochs, top1, marker="o")
        best = int(np.argmax(top1))
        top1_axis.annotate(f"best {top1[best]:.2f}%", (epochs[best], top1[best]),
                           textcoords="offset points", xytext=(0, -14), ha="center")
    top1_axis.set(xlabel="epoch", ylabel="top-1 (%)", title="Evaluation top-1")
    top1_axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
