"""rlhf-ppo end to end on tiny GPT-2 models built with lrl.lm.models (tests/lm_helpers.py) on the ``reverse`` task:
the checks of Rossi ch. 15 that need the models (initial KL 0 and rewards [0, …, 0, r̂], value head = reward head,
sampling temperature, no dropout, frozen reference and reward model), r̂ read as lm-reward reads it, one update
against a hand-written reference, the CLI, exact resume, bf16-mixed and the one-line errors of the chain."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml

from lrl.errors import RecipeError
from lrl.launch import resume, train
from tests.conftest import run_lrl
from tests.integration.test_algorithms import _load, _resumable_parts, assert_same
from tests.lm_helpers import build_models


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_models(tmp_path_factory.mktemp("lm"))


def _recipe(tmp: Path, models: tuple[Path, Path], prompts: int = 16, **algo: Any) -> Path:
    policy, reward = models
    data = {"name": "prompts", "task": "reverse", "policy": str(policy), "prompts_per_batch": 8,
            "max_new_tokens": 6, "train_prompts": 24, "eval_prompts": 8}
    data.update(algo.pop("data", {}))
    trainer = {"accelerator": "cpu", **algo.pop("trainer", {})}
    recipe = {"name": "rlhf-tiny", "seed": 0,
              "algo": {"name": "rlhf-ppo", "reward_path": str(reward), "epochs": 2,
                       "minibatch_size": 4, "lr": 1e-3, **algo},
              "data": data, "budget": {"prompts": prompts}, "trainer": trainer,
              "eval": {"every": 0}, "checkpoint": {"every": 8, "every_minutes": 0},
              "tracking": {"log_model": False, "log_every": 8}}
    path = tmp / "rlhf.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


class Capture(L.Callback):
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.module, self.dm = pl_module, trainer.datamodule


def _fresh(models: tuple[Path, Path], **hp: Any) -> Any:
    from lrl.algos.rlhf_ppo.module import RLHFPPO
    from lrl.lm.generation import PromptsDataModule

    spec = PromptsDataModule.probe_spec(None, {"policy": str(models[0]), "task": "reverse"})
    return RLHFPPO(spec, reward_path=str(models[1]), **hp)


PROMPTS = ["123>", "98765>", "4021>", "555>", "70136>", "8642>"]  # 3-5 digits: left padding of 0-2 tokens


def _rollout(module: Any, models: tuple[Path, Path], temperature: float = 1.0, n: int = 6,
             max_new_tokens: int = 5) -> Any:
    from tensordict import TensorDict

    from lrl.lm.models import load_tokenizer

    tok = load_tokenizer(str(models[0]))
    tok.padding_side = "left"
    enc = tok([PROMPTS[i % len(PROMPTS)] for i in range(n)], return_tensors="pt", padding=True)
    out = module.collection_policy()(enc["input_ids"], enc["attention_mask"], 123, max_new_tokens)
    return TensorDict({"input_ids": torch.cat([enc["input_ids"], out["tokens"]], 1),
                       "attention_mask": torch.cat([enc["attention_mask"].bool(), out["mask"]], 1),
                       "response_mask": out["mask"], "sample_log_prob": out["sample_log_prob"],
                       "group": torch.arange(n), "true_score": torch.zeros(n)}, batch_size=[n])


def test_at_initialisation_kl_is_zero_rewards_are_the_score_at_the_end_and_value_head_is_the_reward_head(
        models: tuple[Path, Path]) -> None:
    module = _fresh(models, temperature=0.7, whiten_reward=False, gae_lambda=1.0, kl_coef=0.3)
    for (n1, p1), (n2, p2) in zip(module.value_model.named_parameters(), module.reward_model.named_parameters(),
                                  strict=True):
        assert n1 == n2 and torch.equal(p1, p2)
    assert torch.equal(module.value_model.score.weight, module.reward_model.score.weight)
    td = module.process_rollout(_rollout(module, models, 0.7))
    mask = td["response_mask"]
    assert not mask.all() or mask.shape[1] == 5  # variable lengths are exercised when a row stops early
    assert torch.equal(td["old_logp"] * mask, td["ref_logp"] * mask)  # π^RL = π^SFT: every KL term is 0
    # the sampling log-probs (generate, KV cache) are the training forward's at the same temperature
    torch.testing.assert_close(td["sample_log_prob"], td["old_logp"] * mask, atol=1e-5, rtol=1e-5)
    # λ = 1, γ = 1: value targets are G_t = r̂ at every generated token (rewards [0, …, 0, r̂]), 0 on padding
    score = module.score_rollout(td)["reward"]
    expected = score[:, None].expand_as(mask) * mask
    torch.testing.assert_close(td["value_target"], expected)


def test_reward_is_lm_rewards_score_of_the_same_text_whatever_the_padding_or_the_cut(
        models: tuple[Path, Path]) -> None:
    """rlhf-ppo reads r̂ on left-padded prompts + right-padded responses; lm-reward trains and scores
    ``prompt + response + eos`` right-padded (lrl.lm.models.encode). Both must give the same number for the same
    text: for responses that stopped at eos and for responses cut at max_new_tokens (eos appended for the reading)."""
    from lrl.algos.lm_reward.module import LMReward
    from lrl.data.lm_text import LMPrefsDataModule
    from lrl.lm.models import encode

    module = _fresh(models)
    td = _rollout(module, models, n=12, max_new_tokens=3)
    read = module.score_rollout(td)["reward"]
    tok, mask = module.tokenizer, td["response_mask"]
    tokens = td["input_ids"][:, -mask.shape[1]:]
    ended = (tokens == tok.eos_token_id).any(-1)
    assert ended.any() and not ended.all()  # both kinds of response are checked
    responses = tok.batch_decode(torch.where(mask, tokens, tok.pad_token_id), skip_special_tokens=True)
    texts = [PROMPTS[i % len(PROMPTS)] + r for i, r in enumerate(responses)]
    # lm-reward's own module, started from the reward-model directory (its trained head), on its own encoding
    rm_spec = LMPrefsDataModule.probe_spec(None, {"policy": str(models[1]), "task": "reverse", "max_length": 16})
    lm_reward = LMReward(rm_spec, init="policy")
    with torch.no_grad():
        expected = lm_reward.rewards(**encode(tok, texts, 16))
    torch.testing.assert_close(read, expected, atol=1e-5, rtol=1e-5)


def test_dropout_is_off_in_the_policy_even_in_train_mode(tmp_path: Path) -> None:
    models = build_models(tmp_path, dropout=0.5)
    module = _fresh(models)
    module.train()
    ids = torch.tensor([[3, 4, 5, 6]])
    torch.testing.assert_close(module.policy(input_ids=ids).logits, module.policy(input_ids=ids).logits)


def test_one_update_matches_a_hand_written_reference_and_frozen_models_get_no_gradient(
        tmp_path: Path, models: tuple[Path, Path]) -> None:
    cap = Capture()
    path = _recipe(tmp_path, models, prompts=8, epochs=1, minibatch_size=None, max_grad_norm=None,
                   normalize_advantage=False, clip_range_vf=None, vf_coef=0.5, ent_coef=0.01, kl_coef=0.2)
    train(str(path), run_dir=tmp_path / "run", callbacks=[cap])
    trained, td = cap.module, cap.dm._flat
    ref = _fresh(models, kl_coef=0.2)
    # the frozen models: no gradient, unchanged
    for name in ("reference", "reward_model"):
        for (_, p), (_, p0) in zip(getattr(trained, name).named_parameters(), getattr(ref, name).named_parameters(),
                                   strict=True):
            assert not p.requires_grad and p.grad is None and torch.equal(p, p0)
    # the reference update, by hand: one Adam step on the whole rollout's token-mean PPO loss
    params = [p for p in list(ref.policy.parameters()) + list(ref.value_model.parameters())]
    opt = torch.optim.Adam(params, lr=1e-3, eps=1e-5)
    ids, am, mask = td["input_ids"], td["attention_mask"].long(), td["response_mask"]
    p = ids.shape[1] - mask.shape[1]
    pos = (am.cumsum(-1) - 1).clamp_min(0)
    logits = ref.policy(input_ids=ids, attention_mask=am, position_ids=pos).logits[:, p - 1:-1].clone()
    tok = ref.tokenizer
    logits[..., [tok.pad_token_id, tok.unk_token_id]] = -1e9  # pad and unk are never sampled: probability 0
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(-1, ids[:, p:, None])[..., 0]
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    hidden = ref.value_model.base_model(input_ids=ids, attention_mask=am, position_ids=pos).last_hidden_state
    value = ref.value_model.score(hidden)[..., 0][:, p - 1:-1]
    ratio = torch.exp(logp - td["old_logp"])
    adv = td["advantage"]
    pg = torch.minimum(ratio * adv, ratio.clamp(0.8, 1.2) * adv)
    m = mask.bool()
    loss = -pg[m].mean() + 0.5 * (value - td["value_target"])[m].pow(2).mean() - 0.01 * entropy[m].mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    for (n, a), (_, b) in zip(trained.policy.named_parameters(), ref.policy.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=n)
    for (n, a), (_, b) in zip(trained.value_model.named_parameters(), ref.value_model.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=n)


def test_cli_trains_evaluates_and_logs_samples(tmp_path: Path, models: tuple[Path, Path],
                                              tracking_uri: str) -> None:
    path = _recipe(tmp_path, models, prompts=16, ptx_coef=0.5, kl_target=2.0,
                   data={"ptx_batch_size": 8, "ptx_corpus": 32})
    cfg = yaml.safe_load(path.read_text())
    cfg["eval"] = {"every": 8}
    path.write_text(yaml.safe_dump(cfg))
    proc = run_lrl("train", str(path), "--run-dir", str(tmp_path / "cli"), "--tracking-uri", tracking_uri)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "eval @ 16 prompts: true score" in proc.stderr
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri)
    run_id = [line.split("MLflow run ")[1].split(",")[0] for line in proc.stderr.splitlines()
              if "MLflow run " in line][-1]
    metrics = client.get_run(run_id).data.metrics
    for key in ("rlhf/reward", "rlhf/kl", "rlhf/true_score", "rlhf/ptx_loss", "rlhf/beta", "eval/true_score"):
        assert key in metrics, key
    texts = [a.path for a in client.list_artifacts(run_id, "samples")]
    assert texts == ["samples/eval-0000000008.txt", "samples/eval-0000000016.txt"]
    from transformers import AutoModelForCausalLM

    final = AutoModelForCausalLM.from_pretrained(tmp_path / "cli" / "model")  # π^RL as a transformers directory
    assert (tmp_path / "cli" / "model" / "tokenizer.json").is_file() and final.config.vocab_size > 0


def test_interrupted_and_resumed_run_ends_with_the_straight_runs_weights(tmp_path: Path,
                                                                        models: tuple[Path, Path]) -> None:
    kw = {"kl_target": 2.0, "ptx_coef": 0.5, "data": {"ptx_batch_size": 8, "ptx_corpus": 32}}
    straight = _recipe(tmp_path, models, prompts=24, **copy.deepcopy(kw))
    train(str(straight), run_dir=tmp_path / "a")
    half = tmp_path / "half"
    half.mkdir()
    train(str(_recipe(half, models, prompts=8, **copy.deepcopy(kw))), run_dir=tmp_path / "b")
    resume(tmp_path / "b", ["budget.prompts=24"])
    a, b = _load(tmp_path / "a/checkpoints/last.ckpt"), _load(tmp_path / "b/checkpoints/last.ckpt")
    pa, pb = _resumable_parts(a), _resumable_parts(b)
    pa["lrl"].pop("recipe"), pb["lrl"].pop("recipe")
    assert_same(pa, pb)
    assert not torch.equal(a["state_dict"]["policy.lm_head.weight"],
                           _load(tmp_path / "b/checkpoints/prompts-0000000008.ckpt")["state_dict"]
                           ["policy.lm_head.weight"])


def test_grpo_and_bf16_mixed_runs(tmp_path: Path, models: tuple[Path, Path]) -> None:
    cap = Capture()
    path = _recipe(tmp_path, models, prompts=8, advantage="grpo", data={"samples_per_prompt": 2},
                   trainer={"precision": "bf16-mixed"})
    train(str(path), run_dir=tmp_path / "g", callbacks=[cap])
    assert cap.module.value_model is None
    td = cap.dm._flat
    assert td.shape[0] == 16 and torch.equal(td["group"][0::2], td["group"][1::2])
    adv = td["advantage"][:, 0]
    torch.testing.assert_close(adv[0::2], -adv[1::2])  # two responses per prompt: ±1/√2 or both 0
    assert (tmp_path / "g/checkpoints/last.ckpt").is_file()


def test_missing_stages_and_bad_directories_are_one_line(tmp_path: Path, models: tuple[Path, Path]) -> None:
    (tmp_path / "empty").mkdir()
    from lrl.algos.rlhf_ppo.module import RLHFPPO
    from lrl.lm.generation import PromptsDataModule
    from lrl.lm.models import build_tokenizer, save_model, tiny_reward_model
    from lrl.lm.task import get_task

    def probe(policy: Path) -> Any:
        return PromptsDataModule.probe_spec(None, {"policy": str(policy), "task": "reverse"})

    missing = tmp_path / "runs" / "lm-sft-reverse" / "model"
    with pytest.raises(RecipeError, match=r"^data.policy=.*: no such directory; train the SFT stage first: "
                                          r"lrl train lm-sft/reverse --run-dir .*runs/lm-sft-reverse$"):
        probe(missing)
    with pytest.raises(RecipeError, match=r"^data.policy=.*empty: no tokenizer found there"):
        probe(tmp_path / "empty")
    spec = probe(models[0])
    with pytest.raises(RecipeError, match=r"^algo.reward_path=.*: no such directory; train the reward model first: "
                                          r"lrl train lm-reward/<task> --run-dir .*runs/lm-reward-reverse "):
        RLHFPPO(spec, reward_path=str(tmp_path / "runs" / "lm-reward-reverse" / "model"))
    # a reward model on other token ids (the arith task's tokenizer) cannot score the policy's tokens
    other = build_tokenizer(get_task("arith"), tmp_path / "arith-tok")
    save_model(tiny_reward_model(other), other, tmp_path / "arith-rm")
    with pytest.raises(RecipeError, match=r"^algo.reward_path=.*arith-rm: its tokenizer is not the policy's"):
        RLHFPPO(spec, reward_path=str(tmp_path / "arith-rm"))


def test_cli_names_the_missing_stage_in_one_line(tmp_path: Path, models: tuple[Path, Path]) -> None:
    proc = run_lrl("train", "rlhf-ppo/reverse", "--run-dir", str(tmp_path / "r"),
                   "data.policy=" + str(tmp_path / "nowhere" / "model"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "train the SFT stage first: lrl train lm-sft/reverse --run-dir " + str(tmp_path / "nowhere"))


def _final_policy(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(run_dir / "model" / "model.safetensors")


def _two_process(tmp_path: Path, models: tuple[Path, Path], strategy: str, prompts: int = 16) -> Path:
    half = tmp_path / f"{strategy}-{prompts}"
    half.mkdir()
    return _recipe(half, models, prompts=prompts, kl_target=2.0, ptx_coef=0.5,
                   data={"ptx_batch_size": 8, "ptx_corpus": 32}, trainer={"devices": 2, "strategy": strategy})


# ~40 s on 2 cores: two runs of two processes
def test_ddp_ranks_stay_identical_and_fsdp_trains_the_same_model(tmp_path: Path, models: tuple[Path, Path]) -> None:
    import json

    from transformers import AutoModelForCausalLM

    proc = run_lrl("train", str(_two_process(tmp_path, models, "ddp")), "--run-dir", str(tmp_path / "ddp"),
                   timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = json.loads((tmp_path / "ddp" / "ddp_params.json").read_text())["sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert _load(tmp_path / "ddp/checkpoints/last.ckpt")["lrl"]["clock"] == 16  # global prompts
    # FSDP (two gloo processes sharding every model) is the same experiment: the same final policy, up to the order
    # of float sums (reduce-scatter instead of all-reduce), and its checkpoint and model/ are full, plain files
    proc = run_lrl("train", str(_two_process(tmp_path, models, "fsdp")), "--run-dir", str(tmp_path / "fsdp"),
                   timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp, fsdp = _final_policy(tmp_path / "ddp"), _final_policy(tmp_path / "fsdp")
    assert ddp.keys() == fsdp.keys()
    for name in ddp:
        torch.testing.assert_close(fsdp[name], ddp[name], rtol=0, atol=1e-6, msg=name)
    sft = AutoModelForCausalLM.from_pretrained(models[0]).state_dict()
    assert not torch.equal(ddp["transformer.wte.weight"], sft["transformer.wte.weight"])  # it trained
    a, b = _load(tmp_path / "ddp/checkpoints/last.ckpt"), _load(tmp_path / "fsdp/checkpoints/last.ckpt")
    assert a["state_dict"].keys() == b["state_dict"].keys() and b["lrl"]["clock"] == 16
    AutoModelForCausalLM.from_pretrained(tmp_path / "fsdp" / "model")  # loads as any transformers directory


@pytest.mark.slow  # ~90 s on 2 cores
def test_fsdp_run_resumes_exactly_and_a_ddp_checkpoint_is_refused_under_fsdp(tmp_path: Path,
                                                                            models: tuple[Path, Path]) -> None:
    for name, prompts in (("straight", 16), ("half", 8)):
        proc = run_lrl("train", str(_two_process(tmp_path, models, "fsdp", prompts)), "--run-dir",
                       str(tmp_path / name), timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_lrl("resume", str(tmp_path / "half"), "budget.prompts=16", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _final_policy(tmp_path / "straight"), _final_policy(tmp_path / "half")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ddp = tmp_path / "ddp"
    proc = run_lrl("train", str(_two_process(tmp_path, models, "ddp", 8)), "--run-dir", str(ddp), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_lrl("resume", str(ddp), "budget.prompts=16", "trainer.strategy=fsdp")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: trainer.strategy=fsdp: this checkpoint was written without FSDP")


def test_fsdp_is_refused_for_an_rl_algorithm_in_one_line(tmp_path: Path) -> None:
    proc = run_lrl("train", "ppo/cartpole", "--run-dir", str(tmp_path / "r"), "trainer.strategy=fsdp",
                   "trainer.accelerator=cpu")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: trainer.strategy=fsdp shards language models (lm-sft, lm-reward, rlhf-ppo); ppo's networks "
        "fit on every device: use trainer.strategy=ddp")
    assert not (tmp_path / "r").exists()
