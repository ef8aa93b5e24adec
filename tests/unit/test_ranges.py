"""Range checks at validation time: every recipe field that type-checks but means nothing is refused in one line.

The coverage test makes the rule table (``lrl.recipe.ranges``) complete by construction: a new keyword argument
of a registered algorithm or data module must get a rule, be a bool/Literal, or be exempted with a reason.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import math
import types
import typing
from typing import Any, Literal

import pytest

from lrl.errors import RecipeError
from lrl.recipe import load, shipped_recipes
from lrl.recipe.load import INJECTED_ALGO, INJECTED_DATA
from lrl.recipe.ranges import EXEMPT, RULES, Rule
from lrl.recipe.registry import ALGORITHMS, DATAMODULES, algorithm_class, datamodule_class
from lrl.recipe.schema import bindable_params


def _classes() -> list[tuple[str, str, type, set[str]]]:
    out = [("algo", name, algorithm_class(name), INJECTED_ALGO) for name in ALGORITHMS]
    return out + [("data", name, datamodule_class(name), INJECTED_DATA) for name in DATAMODULES]


def _arguments() -> list[tuple[str, str, str, Any, Any]]:
    """(section, registered name, argument, annotation, default) for every recipe-settable argument."""
    rows = []
    for section, reg, cls, injected in _classes():
        hints = typing.get_type_hints(cls.__init__)
        for name, p in bindable_params(cls, injected).items():
            rows.append((section, reg, name, hints.get(name, Any), p.default))
    return rows


def _members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _needs_no_rule(annotation: Any) -> bool:
    """bool and Literal (optionally with None): the type check alone admits only meaningful values."""
    return all(m is bool or m is type(None) or typing.get_origin(m) is Literal for m in _members(annotation))


ARGUMENTS = _arguments()


def test_every_argument_has_a_rule_or_needs_none() -> None:
    missing = sorted({f"{section}.{name} ({reg})" for section, reg, name, annotation, _ in ARGUMENTS
                      if name not in RULES and name not in EXEMPT and not _needs_no_rule(annotation)})
    assert not missing, f"add a rule to lrl/recipe/ranges.py RULES (or a reasoned EXEMPT entry) for: {missing}"


def test_every_rule_names_an_argument() -> None:
    """No stale rules: each one is an argument of some registered class (the PPO-family ``epochs`` and
    ``minibatch_size`` arguments of the data-redesign branch share the data module's rules)."""
    names = {name for *_, name, _, _ in ARGUMENTS}
    assert not set(RULES) - names


@pytest.mark.parametrize(("section", "reg", "name", "annotation", "default"),
                         [row for row in ARGUMENTS if row[2] in RULES], ids=lambda v: str(v)[:30])
def test_rule_fits_the_annotation_and_the_default(section: str, reg: str, name: str, annotation: Any,
                                                  default: Any) -> None:
    rule = RULES[name]
    kinds = {"real": {float}, "int": {int}, "sizes": {list[int]}, "choice": {str}, "device": {str}, "path": {str},
             "streams": {dict[str, Any]}}[rule.kind]
    members = _members(annotation)
    assert {m for m in members if m is not type(None)} <= kinds, f"{reg}: {name}: {annotation} vs {rule.kind}"
    assert (type(None) in members) <= rule.nullable, f"{reg}: {name} may be None but its rule refuses null"
    if default is not inspect.Parameter.empty:
        assert rule.accepts(default, default), f"{reg}: the default {name}={default!r} breaks its own rule"


# --- each rule class, through load() ----------------------------------------------------------------------------

@functools.cache
def _recipe_with(section: str, name: str) -> str:
    """A shipped recipe whose resolved ``section`` has ``name``."""
    for recipe in shipped_recipes():
        if name in getattr(load(recipe), section):
            return recipe
    raise AssertionError(f"no shipped recipe has {section}.{name}")


def _bad_values(rule: Rule) -> list[str]:
    """YAML texts just outside the rule (and the values that are never numbers: NaN, ±inf, booleans)."""
    if rule.kind == "sizes":
        return ["[]", "[0]", "[64, -1]", "[true]"]
    if rule.kind in ("choice", "device"):
        return ["nope", "''"]
    bad = ["true"] + ([".nan", ".inf", "-.inf"] if rule.kind == "real" else [])
    if rule.low is not None:
        bad.append(str(rule.low) if rule.low_open else str(rule.low - (1 if rule.kind == "int" else 0.5)))
    if rule.high is not None:
        bad.append(str(rule.high) if rule.high_open else str(rule.high + 0.5))
    if not rule.nullable:
        bad.append("null")
    return bad


def _good_values(rule: Rule) -> list[str]:
    """The closed ends of the interval, and null where allowed."""
    good = ["null"] if rule.nullable else []
    if rule.kind in ("real", "int"):
        good += [str(b) for b, is_open in ((rule.low, rule.low_open), (rule.high, rule.high_open))
                 if b is not None and not is_open]
    return good


def _section_of(name: str) -> str:
    return next(section for section, _, n, _, _ in ARGUMENTS if n == name)


GENERIC = sorted(n for n in RULES if RULES[n].kind not in ("path", "streams"))  # those two: tested below
CASES = [(_section_of(n), n, v) for n in GENERIC for v in _bad_values(RULES[n])]


@pytest.mark.parametrize(("section", "name", "text"), CASES)
def test_out_of_range_is_one_line_naming_key_value_and_range(section: str, name: str, text: str) -> None:
    recipe = _recipe_with(section, name)
    with pytest.raises(RecipeError) as err:
        load(recipe, [f"{section}.{name}={text}"])
    msg = err.value.message
    assert f"{section}.{name}:" in msg and "\n" not in msg and err.value.exit_code == 2, msg


@pytest.mark.parametrize(("section", "name", "text"),
                         [(_section_of(n), n, v) for n in GENERIC for v in _good_values(RULES[n])])
def test_the_ends_of_each_range_are_accepted(section: str, name: str, text: str) -> None:
    recipe = _recipe_with(section, name)
    try:
        load(recipe, [f"{section}.{name}={text}"])
    except RecipeError as err:  # another section's constraint (e.g. a2c's data checks) may still object
        assert f"{section}.{name}: must be" not in err.message


@pytest.mark.parametrize(
    ("recipe", "override", "fragment"),
    [
        ("ppo/cartpole", "algo.lr=-1", "algo.lr: must be a finite number > 0 (got -1)"),
        ("ppo/cartpole", "algo.lr=.nan", "algo.lr: must be a finite number > 0 (got nan)"),
        ("ppo/cartpole", "algo.gamma=1.5", "algo.gamma: must be a number in [0, 1] (got 1.5)"),
        ("ppo/cartpole", "algo.clip_range=0", "algo.clip_range: must be a finite number > 0 (got 0)"),
        ("ppo/cartpole", "algo.hidden=[0]", "algo.hidden: must be null or a non-empty list of integers >= 1"),
        ("ppo/cartpole", "algo.max_grad_norm=0", "algo.max_grad_norm: must be null or a finite number > 0"),
        ("ppo/cartpole", "algo.activation=sigmoid", "algo.activation: must be one of tanh, relu, elu, gelu"),
        ("dqn/cartpole", "data.buffer_size=0", "data.buffer_size: must be an integer >= 1 (got 0)"),
        ("dqn/cartpole", "algo.eps_end=1.01", "algo.eps_end: must be a number in [0, 1]"),
        ("dqn/cartpole", "data.buffer_device=gpu0", "data.buffer_device: must be null or a torch device"),
        ("sac/pendulum", "algo.tau=0", "algo.tau: must be a number in (0, 1]; a target weight of 0 never moves"),
        ("trpo/cartpole", "algo.backtrack_coef=1", "algo.backtrack_coef: must be a number in (0, 1)"),
        ("ppo-kl/cartpole", "algo.adaptive_factor=1", "algo.adaptive_factor: must be a finite number > 1"),
    ],
)
def test_messages(recipe: str, override: str, fragment: str) -> None:
    with pytest.raises(RecipeError) as err:
        load(recipe, [override])
    assert fragment in err.value.message


def test_ranges_accept_what_the_shipped_recipes_say() -> None:
    for recipe in shipped_recipes():
        resolved = load(recipe)
        for section in ("algo", "data"):
            for name, value in getattr(resolved, section).items():
                if name in RULES:
                    assert RULES[name].accepts(value, value), f"{recipe}: {section}.{name}={value!r}"
                    assert not (isinstance(value, float) and math.isnan(value))


# --- trainer, env, name, seed -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("trainer.devices=0", "trainer.devices: must be a count >= 1"),
        ("trainer.devices=-2", "trainer.devices:"),
        ("trainer.devices=[]", "trainer.devices:"),
        ("trainer.devices=[0, 0]", "trainer.devices:"),
        ("trainer.devices=[-1]", "trainer.devices:"),
        ("trainer.devices='0'", "trainer.devices:"),
        ("trainer.devices='1,1'", "trainer.devices:"),
        ("trainer.devices=true", "trainer.devices:"),
        ("trainer.num_nodes=0", "trainer.num_nodes: must be an integer >= 1"),
        ("trainer.precision=64-true", "trainer.precision: must be one of 32-true, 16-mixed, bf16-mixed"),
        ("trainer.precision=bf16-true", "trainer.precision:"),
        ("trainer.precision=17", "trainer.precision:"),
        ("trainer.accelerator=xpu", "trainer.accelerator: must be one of cpu, gpu, cuda, mps, tpu, auto"),
        ("trainer.strategy=nccl", "trainer.strategy: must be 'auto' or one of Lightning's strategy names"),
        ("trainer.deterministic=maybe", "trainer.deterministic: must be true, false or 'warn'"),
        ("trainer.strategy=ddp_spawn", "trainer.strategy=ddp_spawn: not supported"),
        ("trainer.strategy=ddp_fork", "trainer.strategy=ddp_fork: not supported"),
        ("trainer.strategy=ddp_notebook_find_unused_parameters_true", "not supported"),
        ("trainer.log_every_n_steps=5", "trainer.log_every_n_steps: set by lrl itself"),
        ("env.id=", "env.id:"),
        ("env.kwargs={1: 2}", "env.kwargs.1.[key]:"),
        ("name=", "name: must not be empty"),
        ("name=a/b", "name: must be a file name"),
        ("name=..", "name: must be a file name"),
        ('name="a\\tb"', "name: must not contain control characters"),
        (f"name={'x' * 256}", "name: must be at most 255 bytes"),
        ("seed=-1", "seed:"),
        (f"seed={2**32}", "seed:"),
    ],
)
def test_trainer_env_name_seed(override: str, fragment: str) -> None:
    with pytest.raises(RecipeError) as err:
        load("ppo/cartpole", [override])
    assert fragment in err.value.message and "\n" not in err.value.message


@pytest.mark.parametrize(
    "override",
    ["trainer.devices=auto", "trainer.devices=-1", "trainer.devices=[0, 1]", "trainer.devices='0,1'",
     "trainer.devices=2", "trainer.precision=bf16-mixed", "trainer.precision=16", "trainer.precision=32",
     "trainer.strategy=ddp", "trainer.accelerator=gpu", "trainer.deterministic=warn", "name=ppo-cartpole.v2 (é)",
     f"seed={2**32 - 1}"],
)
def test_valid_trainer_and_names_pass(override: str) -> None:
    load("ppo/cartpole", [override])


@pytest.mark.skipif(importlib.util.find_spec("torch_xla") is not None, reason="torch_xla is installed here")
@pytest.mark.parametrize("override", ["trainer.accelerator=tpu", "trainer.strategy=xla", "trainer.strategy=single_xla"])
def test_xla_without_torch_xla_is_refused_before_the_trainer_is_built(override: str) -> None:
    with pytest.raises(RecipeError, match="needs torch_xla, which is not installed"):
        load("ppo/cartpole", [override])


@pytest.mark.parametrize("text", ["''", "null", "[a]", "{d: {path: ''}}", "{d: {batch_size: 3}}",
                                  "{d: {path: f, batch_size: 0}}", "{d: {path: f, shuffle: true}}", "{'': {path: f}}"])
def test_dataset_paths_and_streams_are_checked(tmp_path: Any, text: str) -> None:
    """``data.path`` (the offline source) and ``data.streams`` (every source) are range-checked like the rest."""
    import yaml

    offline = tmp_path / "offline.yaml"
    offline.write_text(yaml.safe_dump({"name": "o", "algo": {"name": "tests.contract_modules:Classifier"},
                                       "data": {"name": "offline", "path": "d.pt"}, "budget": {"steps": 1}}))
    for recipe, key in ((str(offline), "data.path"), ("ppo/cartpole", "data.streams")):
        if key == "data.streams" and text == "null":
            continue  # no streams is the default
        if key == "data.path" and text.startswith("{"):
            continue
        with pytest.raises(RecipeError) as err:
            load(recipe, [f"{key}={text}"])
        assert f"{key}:" in err.value.message and "\n" not in err.value.message, err.value.message  # type or range
