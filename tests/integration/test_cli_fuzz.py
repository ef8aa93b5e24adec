"""Property-based: adversarial ``KEY=VALUE`` overrides through the command line never end in a traceback.

For every generated case, EITHER the recipe is valid and the run starts (``--dry-run``: validation passes, the env
is probed, exit 0, nothing written; real runs: exit 0 and ``checkpoints/last.ckpt``), OR the CLI prints exactly one
line on stderr starting with ``error: ``, exits non-zero, prints no traceback and leaves no run directory behind.

Keys come from the resolved recipe's leaves (what ``lrl show`` prints), plus unknown keys and nested garbage; values
from adversarial strategies (extreme ints, nan/inf/-0.0, empty and unicode strings, lists, nulls, booleans, YAML
mappings, malformed YAML). Hypothesis runs derandomized, so CI sees the same cases every time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from typer.testing import CliRunner

from lrl.cli import app
from lrl.recipe import load, shipped_recipes

pytestmark = pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")  # torch's import raises it

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = shipped_recipes()
# Real runs: recipes whose 256-frame run takes seconds (on-policy rollouts and replay warm-ups can run past a
# small budget: ppo/pendulum collects one 4096-frame rollout, td3 its 10k-frame warm-up).
CHEAP = ["ppo/cartpole", "a2c/cartpole", "ppo-kl/cartpole", "trpo/cartpole", "sac/pendulum"]
SECTIONS = ["algo", "env", "data", "budget", "trainer", "eval", "checkpoint", "tracking"]
SETTINGS: dict[str, Any] = dict(
    deadline=None, derandomize=True, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)


def leaves(recipe: str) -> dict[str, Any]:
    """Dotted key → value of every leaf of the resolved recipe (empty mappings such as ``env.kwargs`` too)."""
    out: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict) and v:
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v

    walk(load(recipe).to_dict(), "")
    return out


LEAVES = {recipe: leaves(recipe) for recipe in SHIPPED}  # here, not inside a strategy: loading imports modules


# --- values: the text after '=' ---------------------------------------------------------------------------------

def _chars(argv_safe: bool) -> st.SearchStrategy[str]:
    # An argv cannot carry NUL or lone surrogates (the OS would refuse the exec, not lrl); in process it can.
    return st.characters(exclude_categories=("Cs",), exclude_characters="\x00") if argv_safe else st.characters()


SPECIAL_FLOATS = [".nan", ".NaN", "nan", "NaN", ".inf", "-.inf", "inf", "-inf", "-0.0", "0.0", "1e308", "1e999",
                  "-1e999", "5e-324", "1e-320", "0.5", "-0.5", "1.0", "1.5"]
NULLS_BOOLS = ["null", "~", "Null", "NULL", "", "true", "false", "True", "yes", "no", "on", "off", "y"]
MAPPINGS = ["{}", "{a: 1}", "{name: ppo}", "{lr: -1}", "{frames: 1}", "{id: CartPole-v1}", "{0: 1}",
            "{render_mode: human}", "{sutton_barto_reward: 5}", "{a: {b: {c: .nan}}}"]
MALFORMED = ["[", "{", "]", "}", "a: b: c", "'unterminated", '"unterminated', "{a: [}", "[1, 2", "- a\n- b",
             "!!python/object/apply:os.system ['echo pwned']", "!!binary x", "&a [*a]", "*undefined", "%YAML 1.2",
             "\t", "@x", "`x`", ": :", "? a", "{a: 1, a: 2}", "=", "a=b", "---\n...", "|\n  x", ">-", "!!float x",
             "!!int 1.5", "0x1F", "0o17", "1_000", "12:30:00", "2001-12-14", "[.nan, .inf]", "[[1]]", "[a, b]"]


def values(bounded: bool, argv_safe: bool) -> st.SearchStrategy[str]:
    """YAML texts. ``bounded``: numbers small enough that a valid real run still finishes in seconds (a valid
    ``data.learning_starts=10**9`` would honestly collect for hours); the dry-run cases take the full range."""
    ints = (st.integers(-3, 64) if bounded else st.one_of(
        st.sampled_from([0, -1, 1, 2, -(2**31), 2**31 - 1, 2**32, 2**63, -(2**63) - 1, 10**30, 10**400]),
        st.integers()))
    floats = st.floats(-10, 10) if bounded else st.floats(allow_nan=True, allow_infinity=True)
    text = st.text(_chars(argv_safe), max_size=12)
    return st.one_of(
        ints.map(str),
        st.sampled_from(SPECIAL_FLOATS),
        floats.map(repr),
        text,
        text.map(json.dumps),  # a double-quoted YAML string, escapes and all
        st.lists(st.integers(-3, 64) if bounded else st.integers(-3, 2**40), max_size=4).map(json.dumps),
        st.sampled_from(NULLS_BOOLS),
        st.sampled_from(MAPPINGS),
        st.dictionaries(st.text("abcxyz_", min_size=1, max_size=4), ints, max_size=3).map(json.dumps),
        st.sampled_from(MALFORMED),
    )


# --- keys --------------------------------------------------------------------------------------------------------

def keys(recipe: str, argv_safe: bool) -> st.SearchStrategy[str]:
    known = sorted(LEAVES[recipe])
    ident = st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=10)
    weird = st.text(_chars(argv_safe), min_size=0, max_size=8)
    return st.one_of(
        st.sampled_from(known),
        st.sampled_from(known),  # twice: most cases should hit real keys
        st.tuples(st.sampled_from(SECTIONS), ident).map(".".join),  # unknown key in a known section
        ident,  # unknown top-level key
        st.tuples(st.sampled_from(known), ident).map(".".join),  # nested under a leaf (a scalar or a mapping)
        st.sampled_from(SECTIONS),  # replace a whole section
        weird,  # anything at all: empty, dots, unicode, '=', newlines
        st.tuples(st.sampled_from(SECTIONS), weird).map(".".join),
        st.sampled_from(["a..b", ".algo", "algo.", "..", "env.kwargs.render_mode", "env.kwargs.max_episode_steps",
                         "algo.name", "data.name", "trainer.max_epochs", "trainer.fast_dev_run", "algo.env_spec",
                         "data.seed", "data.budget_frames"]),
    )


@st.composite
def case(draw: st.DrawFn, recipes: list[str], bounded: bool, argv_safe: bool) -> tuple[str, list[str]]:
    recipe = draw(st.sampled_from(recipes))
    own = st.sampled_from(sorted(LEAVES[recipe].items())).map(lambda kv: f"{kv[0]}={json.dumps(kv[1])}")
    one = st.one_of(st.tuples(keys(recipe, argv_safe), values(bounded, argv_safe)).map("=".join),
                    own)  # a key's own value, valid: some cases must get through
    return recipe, draw(st.lists(one, min_size=1, max_size=3))


# --- the property ------------------------------------------------------------------------------------------------

def check(code: int, stdout: str, stderr: str, run_dir: Path, real: bool, what: str) -> None:
    if currently_in_test_context():  # --hypothesis-show-statistics counts the outcomes
        event("valid: the run started" if code == 0 else f"refused: exit {code}")
    if code == 0:
        if real:
            assert (run_dir / "checkpoints" / "last.ckpt").is_file(), f"{what}: exit 0 but no last.ckpt"
        else:
            assert not run_dir.exists(), f"{what}: --dry-run wrote {run_dir}"
        return
    lines = stderr.splitlines()
    assert "Traceback" not in stderr + stdout, f"{what}: traceback\n{stderr}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{what}: expected one 'error: ' line, got {stderr!r}"
    assert not run_dir.exists(), f"{what}: failed but left {run_dir}"


def train_args(recipe: str, overrides: list[str], tmp: Path, dry_run: bool) -> list[str]:
    # Options first and '--' before the overrides, so an override that starts with '-' stays an override.
    return ["train", *(["--dry-run"] if dry_run else []), "--run-dir", str(tmp / "run"),
            "--tracking-uri", f"file:{tmp}/mlruns", recipe, "--", *overrides]


def invoke(recipe: str, overrides: list[str], dry_run: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="lrl-fuzz-"))
    try:
        result = CliRunner().invoke(app, train_args(recipe, overrides, tmp, dry_run))
        what = f"lrl train {recipe} {' '.join(map(repr, overrides))}"
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            pytest.fail(f"{what}: raised\n{''.join(traceback.format_exception(*result.exc_info))}")  # type: ignore[misc]
        check(result.exit_code, result.stdout, result.stderr, tmp / "run", not dry_run, what)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# MLflow 3 refuses file: stores without the opt-in. One torch thread: on a shared 2-core machine, spinning OpenMP
# threads made a 256-frame SAC run take 20-50 s instead of 3 (lrl's own LRL_NUM_THREADS knob).
ENV = {"MLFLOW_ALLOW_FILE_STORE": "true", "LRL_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


@settings(max_examples=300, **SETTINGS)
@given(case(SHIPPED, bounded=False, argv_safe=False))
def test_dry_run_in_process(c: tuple[str, list[str]]) -> None:
    invoke(*c, dry_run=True)


# Forced after the generated overrides (later ones win): a small budget, no periodic work, one process, and no
# torch.compile (minutes of compilation for a 256-frame run); these keys are fuzzed by the dry-run cases.
FORCED = ["budget.frames=256", "eval.every=0", "checkpoint.every=0", "eval.final=false",
          "trainer.devices=1", "trainer.strategy=auto", "algo.compile=false"]


@settings(max_examples=20, **SETTINGS)
@given(case(CHEAP, bounded=True, argv_safe=False))
def test_real_run_in_process(c: tuple[str, list[str]]) -> None:
    recipe, overrides = c
    invoke(recipe, [*overrides, *FORCED], dry_run=False)


def run_executable(recipe: str, overrides: list[str], dry_run: bool) -> None:
    """``python -m lrl.cli``: a fresh process that imports the code under test, as a user runs it."""
    tmp = Path(tempfile.mkdtemp(prefix="lrl-fuzz-"))
    try:
        env = {**os.environ, **ENV, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-m", "lrl.cli", *train_args(recipe, overrides, tmp, dry_run)],
                              capture_output=True, text=True, timeout=300, env=env, cwd=tmp)
        what = f"lrl train {recipe} {' '.join(map(repr, overrides))}"
        check(proc.returncode, proc.stdout, proc.stderr, tmp / "run", not dry_run, what)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@settings(max_examples=10, **SETTINGS)
@given(case(SHIPPED, bounded=False, argv_safe=True))
def test_real_executable(c: tuple[str, list[str]]) -> None:
    run_executable(*c, dry_run=True)


@settings(max_examples=2, **SETTINGS)
@given(case(CHEAP, bounded=True, argv_safe=True))
@example(("ppo/cartpole", ["algo.lr=1e-3"]))  # at least one real run through the executable, whatever is drawn
# Found: a check in the algorithm's setup fails after the MLflow logger's first contact; Lightning's "Experiment
# ... Creating it." notice made stderr two lines.
@example(("reinforce/cartpole", ["algo.policy_epochs=100"]))
def test_real_executable_real_run(c: tuple[str, list[str]]) -> None:
    """In a real process the logging reaches stderr too (in process it goes to pytest's capture)."""
    recipe, overrides = c
    run_executable(recipe, [*overrides, *FORCED], dry_run=False)


# Found by the generated cases (e.g. ``lrl train a2c/cartpole 'algo.activation=!!float x'``, ``lrl train
# npg/inverted-pendulum 'data.seed=!!int 1.5'``): an explicit YAML tag whose conversion fails made yaml.safe_load
# raise ValueError, which parse_override did not catch (a traceback). Fixed in lrl/recipe/load.py; kept as cases.
@pytest.mark.parametrize("override", ["algo.lr=!!float x", "algo.lr=!!int 1.5", "data.seed=!!int 1.5"])
def test_found_yaml_tag_conversion(override: str) -> None:
    invoke("ppo/cartpole", [override], dry_run=True)


def test_the_forced_settings_leave_a_valid_run() -> None:
    """The real-run cases add FORCED after the generated overrides: on their own they must give a run that starts
    and finishes (else every real case would end in an error line and prove nothing)."""
    tmp = Path(tempfile.mkdtemp(prefix="lrl-fuzz-"))
    try:
        result = CliRunner().invoke(app, train_args("ppo/cartpole", FORCED, tmp, dry_run=False))
        assert result.exit_code == 0, result.stderr
        assert (tmp / "run" / "checkpoints" / "last.ckpt").is_file()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
