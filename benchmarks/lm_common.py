"""What ``lm_compare.py`` (lrl, system python) and ``lm_trl.py`` (TRL, its own virtual environment) share: the
export directory's files and the evaluation both sides' models go through, so a number on one side means the same
as on the other.

Needs only torch, transformers and lrl's task / model-loading code (``lrl.lm.task``, ``lrl.lm.models``: pure Python
plus transformers; lrl's own dependencies such as Lightning are not imported), so it runs in both environments with
``PYTHONPATH`` at the lrl tree.

Export directory (written by ``lm_compare.py export``, read by ``lm_trl.py``)::

    settings.json       task, seeds, the resolved lrl recipes and the TRL keyword arguments mapped from them
    sft/                the lm-sft model (HF directory, tokenizer included): the policy / RM starting point
    rm/                 lrl's lm-reward model: the reward GRPO and PPO optimise on both sides (same r̂ for both)
    prefs-train.jsonl   one row per train prompt: {"prompt", "responses": [K], "utility": [K], "score": [K]}
    prefs-test.jsonl    the same for the held-out prompts (RM accuracy)
    prompts-train-grpo.jsonl, prompts-train-ppo.jsonl   {"prompt"} rows: the pool each RL run samples from
    prompts-test.jsonl  {"prompt"} rows the policies are scored on

Metrics:
- RM accuracy: over the C(K, 2) pairs of every held-out prompt, the fraction r̂ orders as the hidden TRUE score does
  (pairs of equal true score not counted) — lrl's ``rm/accuracy`` definition; also against the annotator's noisy
  utility (``accuracy_annotator``: the labels both trainers fit).
- Policy: one response per held-out prompt sampled at the evaluation temperature (KV cache, ``model.generate``,
  seeded); ``true_score`` = mean hidden score of those responses; ``kl`` = mean over responses of
  Σ_t [log π(y_t | x, y_<t) − log π_SFT(y_t | x, y_<t)] over the generated tokens up to and including the first
  end-of-sequence token, at the sampling temperature: a one-sample estimate of KL(π ‖ π_SFT) per sequence (lrl's
  ``rlhf/kl`` definition).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def append_result(path: str | Path, row: dict[str, Any]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def machine() -> dict[str, Any]:
    """Thread count and load, recorded with every result (the reference machine's 2 cores are shared)."""
    return {"threads": torch.get_num_threads(), "load1": round(os.getloadavg()[0], 2), "torch": torch.__version__}


@torch.no_grad()
def rm_scores(model: Any, tokenizer: Any, texts: list[str], max_length: int, batch: int = 512) -> torch.Tensor:
    """r̂ of each ``text + eos`` (right-padded, read at the last non-pad token: lrl's ``encode``)."""
    from lrl.lm.models import encode

    model.eval()
    out = []
    for start in range(0, len(texts), batch):
        enc = encode(tokenizer, texts[start:start + batch], max_length)
        out.append(model(**enc).logits[:, 0].float())
    return torch.cat(out)


def rm_accuracy(rm_dir: str | Path, rows: list[dict[str, Any]], max_length: int) -> dict[str, float]:
    """Held-out pair accuracy of a reward-model directory against the true score and the annotator's utility."""
    from lrl.lm.models import load_reward_model

    model, tok = load_reward_model(rm_dir, "reward model")
    k = len(rows[0]["responses"])
    r = rm_scores(model, tok, [x["prompt"] + y for x in rows for y in x["responses"]], max_length).view(-1, k)
    out: dict[str, float] = {}
    for name, key in (("accuracy", "score"), ("accuracy_annotator", "utility")):
        target = torch.tensor([x[key] for x in rows], dtype=torch.float32)
        i, j = torch.triu_indices(k, k, 1)
        dt = target[:, i] - target[:, j]
        counted = dt != 0
        right = ((r[:, i] - r[:, j]) * dt > 0) & counted
        out[name] = right.sum().item() / max(1, counted.sum().item())
        out[f"{name}_pairs"] = int(counted.sum().item())
    return out


class RewardModelScorer:
    """r̂(prompt, completion) from a reward-model directory, read as lrl's rlhf-ppo reads it: at the last generated
    token, which is the end-of-sequence token when the response has one (TRL hands a reward function the completion
    token ids up to and including the first eos). For TRL's ``GRPOTrainer`` as a reward function: handing TRL the
    model itself would score the decoded ``prompt + completion`` text, without the end-of-sequence token the model
    was trained to read its score at."""

    def __init__(self, rm_dir: str | Path, max_length: int) -> None:
        from lrl.lm.models import load_reward_model

        self.model, self.tokenizer = load_reward_model(rm_dir, "reward model")
        self.model.requires_grad_(False)
        self.model.eval()
        self.max_length = max_length
        self.__name__ = "reward_model"

    @torch.no_grad()
    def __call__(self, prompts: list[str], completions: list[str], completion_ids: list[list[int]] | None = None,
                 **_: Any) -> list[float]:
        if completion_ids is None:  # text only: the response ends with eos (lrl's encode)
            texts = [p + c for p, c in zip(prompts, completions, strict=True)]
            return rm_scores(self.model, self.tokenizer, texts, self.max_length).tolist()
        pad = self.tokenizer.pad_token_id
        rows = [self.tokenizer(p)["input_ids"] + list(c) for p, c in zip(prompts, completion_ids, strict=True)]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        mask = (torch.arange(width)[None, :] < torch.tensor([len(r) for r in rows])[:, None]).long()
        return self.model(input_ids=ids, attention_mask=mask).logits[:, 0].float().tolist()


@torch.no_grad()
def _sequence_logprob(model: Any, ids: torch.Tensor, start: int, mask: torch.Tensor, temperature: float
                      ) -> torch.Tensor:
    """Σ over the response columns (``ids[:, start:]`` where ``mask``) of log softmax(logits / T)[token]."""
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, start - 1:-1].float()
    logp = torch.log_softmax(logits / temperature, -1).gather(-1, ids[:, start:].unsqueeze(-1)).squeeze(-1)
    return (logp * mask).sum(-1)


@torch.no_grad()
def policy_eval(policy_dir: str | Path, ref_dir: str | Path, task_name: str, prompts: list[str], *,
                temperature: float, max_new_tokens: int, seed: int, batch: int = 256) -> dict[str, float]:
    """True score and KL to the reference of one sampled response per prompt (see the module docstring)."""
    from lrl.lm.models import load_causal_lm
    from lrl.lm.task import get_task

    task = get_task(task_name)
    policy, tok = load_causal_lm(policy_dir, "policy")
    ref, _ = load_causal_lm(ref_dir, "reference")
    policy.eval()
    ref.eval()
    eos = tok.eos_token_id
    ids = [tok(p)["input_ids"] for p in prompts]
    scores, kls, lengths = [], [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for length in sorted({len(x) for x in ids}):
            rows = [i for i, x in enumerate(ids) if len(x) == length]
            for start in range(0, len(rows), batch):
                part = rows[start:start + batch]
                x = torch.tensor([ids[i] for i in part])
                gen = policy.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=True,
                                      temperature=temperature, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens,
                                      pad_token_id=tok.pad_token_id, eos_token_id=eos)
                resp = gen[:, length:]
                is_eos = resp == eos
                mask = ((is_eos.long().cumsum(-1) - is_eos.long()) == 0).float()  # through the first eos
                kls += (_sequence_logprob(policy, gen, length, mask, temperature)
                        - _sequence_logprob(ref, gen, length, mask, temperature)).tolist()
                lengths += mask.sum(-1).tolist()
                for i, row in zip(part, resp.tolist(), strict=True):
                    if eos in row:
                        row = row[:row.index(eos)]
                    scores.append(task.score(prompts[i], tok.decode(row, skip_special_tokens=True)))
    n = len(scores)
    return {"true_score": sum(scores) / n, "kl": sum(kls) / n, "response_tokens": sum(lengths) / n, "eval_prompts": n}
