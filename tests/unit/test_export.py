"""The exported policy program and pyfunc model compute ``Policy.__call__``: normalisation with the run's
statistics, clipping, the deterministic action and the action box; what cannot be exported warns once."""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from lrl.evaluate import Policy
from lrl.export import export_program, log_policy_model
from lrl.recipe import load
from lrl.recipe.registry import algorithm_class
from lrl.recipe.schema import algo_arguments
from lrl.spec import Spec

PENDULUM = Spec("Pendulum-v1", (3,), "continuous", 1, (-2.0,), (2.0,))


def _pendulum_policy() -> Policy:
    """An untrained PPO policy on Pendulum, with statistics that make normalisation and both clips matter."""
    torch.manual_seed(0)
    recipe = load("ppo/pendulum")
    module = algorithm_class("ppo")(PENDULUM, **algo_arguments(recipe.algo))
    with torch.no_grad():  # wide mean actions: the action box clips some of them
        module.net.head.linear.weight.normal_(0.0, 1.0)  # type: ignore[union-attr, operator]
    stats = {"mean": np.array([0.5, -0.2, 1.0]), "var": np.array([0.04, 2.0, 9.0])}
    return Policy(module, stats, clip_obs=3.0)


def _observations() -> np.ndarray:
    return (np.random.default_rng(1).normal(size=(50, 3)) * [1.0, 1.0, 8.0]).astype(np.float32)


def test_program_equals_policy_with_normalisation_and_clipping(tmp_path: Path) -> None:
    policy, obs = _pendulum_policy(), _observations()
    expected = policy(obs)
    normalised = policy.normalize(obs)
    assert (np.abs(normalised) == 3.0).any() and (np.abs(normalised) < 3.0).any()  # both clips are exercised
    assert (np.abs(expected) == 2.0).any() and (np.abs(expected) < 2.0).any()
    export_program(policy, tmp_path / "policy.pt2")
    program = torch.export.load(tmp_path / "policy.pt2").module()
    for batch in (obs, obs[:1], obs[:7]):  # the batch size is dynamic
        with torch.no_grad():
            actions = program(torch.as_tensor(batch)).numpy()
        np.testing.assert_allclose(actions, policy(batch), rtol=0, atol=1e-6)


def test_pyfunc_model_with_continuous_actions(tracking_uri: str) -> None:
    policy, obs = _pendulum_policy(), _observations()
    client = MlflowClient(tracking_uri)
    run = client.create_run(client.create_experiment("export-continuous"))
    assert log_policy_model(policy, tracking_uri, run.info.run_id)
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    out = model.predict(obs)
    assert out.dtype == np.float32 and out.shape == (50, 1)
    np.testing.assert_allclose(out, policy(obs), rtol=0, atol=1e-6)


def test_goal_observations_and_a_missing_run_warn_once(caplog: pytest.LogCaptureFixture, tracking_uri: str) -> None:
    policy = _pendulum_policy()
    goal = Policy(policy.module, None, 10.0)
    goal.spec = Spec("PointMaze", (4,), "continuous", 2, (-1.0, -1.0), (1.0, 1.0), "goal", (2,))
    with caplog.at_level(logging.WARNING, logger="lrl"):
        assert not log_policy_model(goal, tracking_uri, "0" * 32)
        assert not log_policy_model(policy, tracking_uri, "0" * 32)  # a run the store does not hold
    warnings = [r.getMessage() for r in caplog.records if r.name == "lrl"]
    assert len(warnings) == 2, warnings
    assert "goal observations are not exported" in warnings[0]
    assert warnings[1].startswith("the policy was not logged as an MLflow model: ")
