"""Tests of the grouped SGD against torch.optim.SGD's update rule, written in NumPy."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fat_jax.train import optim

GROUPS = [
    optim.ParamGroup(name="act_alpha", pattern=r"act_alpha$", lr=0.1, weight_decay=1e-4),
    optim.ParamGroup(name="fat", pattern=r"(weight_alpha|transform)$", lr=0.02,
                     weight_decay=1e-4),
    optim.ParamGroup(name="default", pattern=r".*", lr=0.04, weight_decay=5e-4),
]


def _params():
    rng = np.random.default_rng(0)
    return {
        "layer1_0": {
            "conv1": {
                "kernel": jnp.asarray(rng.normal(size=(3, 3, 4, 4)), jnp.float32),
                "transform": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32),
                "weight_alpha": jnp.asarray(3.0),
                "act_alpha": jnp.asarray(5.0),
            },
            "bn1": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
        }
    }


def test_assign_groups_first_match_wins():
    labels = optim.assign_groups(_params(), GROUPS)
    conv = labels["layer1_0"]["conv1"]
    assert conv["act_alpha"] == "act_alpha"
    assert conv["weight_alpha"] == "fat"
    assert conv["transform"] == "fat"
    assert conv["kernel"] == "default"
    assert labels["layer1_0"]["bn1"]["scale"] == "default"


def test_assign_groups_unmatched_raises():
    groups = GROUPS[:2]
    with pytest.raises(ValueError, match=r"layer1_0/conv1/kernel.*catch-all group"):
        optim.assign_groups(_params(), groups)


def test_sgd_matches_torch_rule():
    """Coupled L2 before momentum, no dampening, per-group rates, step decay."""
    params = _params()
    steps_per_epoch, decay_epochs = 2, (1,)
    tx, schedules = optim.create_optimizer(
        params, GROUPS, momentum=0.9, nesterov=False, steps_per_epoch=steps_per_epoch,
        decay_epochs=decay_epochs, decay_factor=0.1)
    state = tx.init(params)
    labels = optim.assign_groups(params, GROUPS)
    by_name = {g.name: g for g in GROUPS}

    rng = np.random.default_rng(1)
    expected = {k: np.asarray(v, np.float64) for k, v in params["layer1_0"]["conv1"].items()}
    buffers = {k: np.zeros_like(v) for k, v in expected.items()}
    for step in range(4):
        grads = {"layer1_0": {
            "conv1": {k: jnp.asarray(rng.normal(size=v.shape), jnp.float32)
                      for k, v in params["layer1_0"]["conv1"].items()},
            "bn1": {k: jnp.zeros_like(v) for k, v in params["layer1_0"]["bn1"].items()},
        }}
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        for name in expected:
            group = by_name[labels["layer1_0"]["conv1"][name]]
            lr = group.lr * (0.1 if step >= steps_per_epoch else 1.0)
            d_p = np.asarray(grads["layer1_0"]["conv1"][name], np.float64)
            d_p = d_p + group.weight_decay * expected[name]
            buffers[name] = d_p if step == 0 else 0.9 * buffers[name] + d_p
            expected[name] = expected[name] - lr * buffers[name]
    for name, value in expected.items():
        np.testing.assert_allclose(np.asarray(params["layer1_0"]["conv1"][name]), value,
                                   rtol=1e-5, atol=1e-6, err_msg=name)
    assert float(schedules["default"](steps_per_epoch - 1)) == pytest.approx(0.04)
    assert float(schedules["default"](steps_per_epoch)) == pytest.approx(0.004)


def test_groups_from_config_bad_regex():
    with pytest.raises(ValueError, match=r"optimizer.groups.bad.pattern='\('"):
        optim.groups_from_config({"bad": {"pattern": "(", "lr": 0.1, "weight_decay": 0.0}})
