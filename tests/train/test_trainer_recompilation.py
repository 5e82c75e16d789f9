"""The trainer compiles everything in its first epoch and nothing after it.

A recompilation in a later epoch (a changed shape, dtype, sharding or weak type of the
state or a batch) would cost a full compile of the train step each time it happens.
The test uses the digits config of tests/train/test_trainer.py unchanged, so its
programs come from the session's compilation cache when that file ran first.
"""

import pytest

from configs import digits
from fat_jax import benchmarking, data
from fat_jax.train import trainer


@pytest.mark.slow
def test_second_epoch_compiles_nothing(tmp_path, monkeypatch):
    config = digits.get_config()
    config.dataset.data_dir = str(tmp_path / "tfds")
    config.num_epochs = 2
    steps_per_epoch = data.steps_per_epoch("digits", config.batch_size,
                                           data_dir=config.dataset.data_dir)
    # Label every compile event with the number of training batches drawn so far. The
    # trainer draws batch k right before step k, so labels up to steps_per_epoch cover
    # the first epoch with its evaluation and checkpoint.
    recorder = benchmarking.CompileRecorder(label=0)
    unwrapped_iterator = data.train_iterator

    def counting_iterator(*args, **kwargs):
        for batch in unwrapped_iterator(*args, **kwargs):
            recorder.label += 1
            yield batch

    monkeypatch.setattr(data, "train_iterator", counting_iterator)
    with recorder:
        summary = trainer.train_and_evaluate(config, tmp_path / "run")

    assert summary.steps == 2 * steps_per_epoch
    assert recorder.label == 2 * steps_per_epoch
    first_epoch = [event for event in recorder.events if event.label <= steps_per_epoch]
    later = [f"{event.stage} {event.function} before step {event.label}"
             for event in recorder.events if event.label > steps_per_epoch]
    assert any(event.stage == "compile" for event in first_epoch)
    assert later == []
