"""Tokenizers and models for the LM stages (docs/lm-rlhf.md): a character-level tokenizer trained with
``tokenizers`` on a task's corpus, a tiny GPT-2 built from a config (nothing is downloaded, ever), and loaders for
any local ``transformers`` causal-LM or reward-model directory. ``transformers`` is imported inside the functions.

Every text the LM stages see is ``prompt + response + eos``; the pad token is a separate token (``<pad>``), so a
sequence classifier reads its score at the last non-pad token: the end-of-sequence marker.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrl.errors import RecipeError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

    from lrl.lm.task import Task

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
TOKENIZER_CORPUS = (2000, 0)  # (texts, seed) a task's tokenizer is trained on: fixed, so every stage agrees


def quiet_transformers() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def train_tokenizer(task: Task) -> PreTrainedTokenizerFast:
    """A character-level WordLevel tokenizer trained with ``tokenizers`` on the task's corpus (deterministic), with
    ``<pad>``, ``<eos>`` and ``<unk>``; right padding."""
    quiet_transformers()
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    trainer = trainers.WordLevelTrainer(special_tokens=[PAD, EOS, UNK], min_frequency=1)
    tok.train_from_iterator(task.corpus(*TOKENIZER_CORPUS), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, bos_token=EOS,
                                   unk_token=UNK, padding_side="right")


def build_tokenizer(task: Task, out_dir: str | Path) -> PreTrainedTokenizerFast:
    """:func:`train_tokenizer`, saved with ``save_pretrained`` into ``out_dir``."""
    tok = train_tokenizer(task)
    tok.save_pretrained(str(out_dir))
    return tok


def _tiny_config(tokenizer: PreTrainedTokenizerFast, n_layer: int, n_embd: int, n_head: int,
                 n_positions: int) -> Any:
    """GPT-2's config for ``tokenizer``, dropout off (Rossi §15.2.9), eos doubling as bos, the tokenizer's pad."""
    quiet_transformers()
    from transformers import GPT2Config

    return GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                      n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)


def tiny_lm(tokenizer: PreTrainedTokenizerFast, n_layer: int = 2, n_embd: int = 64, n_head: int = 2,
            n_positions: int = 32) -> PreTrainedModel:
    """A GPT-2 built from a config (random weights, no dropout: Rossi §15.2.9) for ``tokenizer``."""
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel(_tiny_config(tokenizer, n_layer, n_embd, n_head, n_positions))


def tiny_reward_model(tokenizer: PreTrainedTokenizerFast, n_layer: int = 1, n_embd: int = 32, n_head: int = 2,
                      n_positions: int = 32) -> PreTrainedModel:
    """A fresh GPT-2 sequence classifier with one output (a reward model smaller than the policy)."""
    from transformers import GPT2ForSequenceClassification

    cfg = _tiny_config(tokenizer, n_layer, n_embd, n_head, n_positions)
    cfg.num_labels = 1
    return GPT2ForSequenceClassification(cfg)


def build_tiny_lm(tokenizer: PreTrainedTokenizerFast, out_dir: str | Path, n_layer: int = 2, n_embd: int = 64,
                  n_head: int = 2, n_positions: int = 32) -> Path:
    """:func:`tiny_lm` and its tokenizer saved with ``save_pretrained`` into ``out_dir``."""
    save_model(tiny_lm(tokenizer, n_layer, n_embd, n_head, n_positions), tokenizer, out_dir)
    return Path(out_dir)


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, out_dir: str | Path) -> Path:
    """Model and tokenizer into ``out_dir`` (a temporary sibling, then a rename: never half a directory)."""
    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _vocab_rows(model: Any) -> int:
    return int(model.get_input_embeddings().weight.shape[0])


def load_tokenizer(path: str | Path, what: str = "model", missing: str = "") -> PreTrainedTokenizerFast:
    """The tokenizer saved in a model directory, with a pad token distinct from end-of-sequence. ``missing``: what
    to do when the directory does not exist (e.g. the command that trains the stage writing it)."""
    quiet_transformers()
    from transformers import AutoTokenizer

    p = Path(path)
    if not p.is_dir():
        raise RecipeError(f"{what}={path}: no such directory; "
                          + (missing or "a transformers model directory saved with save_pretrained"))
    try:
        tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    except Exception as err:
        raise RecipeError(f"{what}={path}: no tokenizer found there ({type(err).__name__}); save the tokenizer "
                          "with the model (tokenizer.save_pretrained)") from None
    if tok.eos_token_id is None:
        raise RecipeError(f"{what}={path}: its tokenizer has no end-of-sequence token; set eos_token")
    if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
        raise RecipeError(f"{what}={path}: its tokenizer needs a pad token distinct from end-of-sequence (the "
                          "reward model reads its score at the last non-pad token); add one, e.g. '<pad>'")
    tok.padding_side = "right"
    return tok  # type: ignore[return-value]


def _load(path: str | Path, what: str, auto: str, missing: str = "", **kwargs: Any
          ) -> tuple[Any, PreTrainedTokenizerFast]:
    tok = load_tokenizer(path, what, missing)
    import transformers

    try:
        model = getattr(transformers, auto).from_pretrained(str(path), local_files_only=True, **kwargs)
    except Exception as err:
        raise RecipeError(f"{what}={path}: not a transformers model directory this loader reads ({auto}: "
                          f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})") from None
    rows = _vocab_rows(model)
    if len(tok) > rows:
        raise RecipeError(f"{what}={path}: its tokenizer has {len(tok)} tokens but the model's embedding has {rows} "
                          "rows; save the tokenizer the model was trained with")
    model.config.pad_token_id = tok.pad_token_id
    model.train()  # from_pretrained returns it in eval mode; the stages train it (no dropout in lrl's tiny models)
    return model, tok


def load_causal_lm(path: str | Path, what: str = "model", missing: str = ""
                   ) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Any local ``transformers`` causal-LM directory and its tokenizer; a directory that is not one, or a tokenizer
    that does not fit the model's vocabulary, is one :class:`RecipeError` line (``missing``: the advice when the
    directory does not exist)."""
    return _load(path, what, "AutoModelForCausalLM", missing)


def load_reward_model(path: str | Path, what: str = "model", missing: str = ""
                      ) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A reward-model directory (``AutoModelForSequenceClassification`` with one label) and its tokenizer. Pointed at a
    causal-LM directory, its transformer body is loaded and the score head is new."""
    model, tok = _load(path, what, "AutoModelForSequenceClassification", missing, num_labels=1)
    if model.config.num_labels != 1:
        raise RecipeError(f"{what}={path}: a reward model has one output (num_labels=1), this one has "
                          f"{model.config.num_labels}")
    return model, tok


def encode(tokenizer: PreTrainedTokenizerFast, texts: list[str], max_length: int) -> dict[str, Any]:
    """``text + eos`` for each text, right-padded to ``max_length`` tokens: ``input_ids`` and ``attention_mask``
    (long tensors); a text longer than ``max_length`` is one :class:`RecipeError` line."""
    enc = tokenizer([t + tokenizer.eos_token for t in texts], padding="max_length", max_length=max_length,
                    truncation=False, return_tensors="pt")
    if enc["input_ids"].shape[1] > max_length:
        raise RecipeError(f"a text is {enc['input_ids'].shape[1]} tokens long, more than max_length={max_length}")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def never_sampled(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """The special tokens other than end-of-sequence (pad, unk): no response ever contains them, so a response's
    tokens and its decoded text (``skip_special_tokens``) say the same thing to the scorer and the reward model.
    Generation suppresses them; rlhf-ppo's log-probs give them probability 0 (lrl.estimators.tokens.mask_tokens)."""
    return sorted({int(i) for i in tokenizer.all_special_ids} - {int(tokenizer.eos_token_id)})


def spec_model_dir(spec: Any) -> str | None:
    """The model directory an LM source's spec names (its ``id``), or None when the spec names a task whose
    tokenizer is trained afresh (``task:NAME``)."""
    return None if str(spec.id).startswith("task:") else str(spec.id)


def spec_tokenizer(spec: Any) -> PreTrainedTokenizerFast:
    """The tokenizer an LM source's spec names: the model directory's, or the task's trained one."""
    from lrl.lm.task import get_task

    path = spec_model_dir(spec)
    return load_tokenizer(path) if path is not None else train_tokenizer(get_task(str(spec.id)[len("task:"):]))


def sample_responses(model: Any, tokenizer: PreTrainedTokenizerFast, prompts: list[str], k: int, *,
                     temperature: float, max_new_tokens: int, seed: int, batch: int = 256) -> list[list[str]]:
    """``k`` responses per prompt sampled from ``model`` with a KV cache (``model.generate``) at ``temperature``, as
    text (the tokens before end-of-sequence; pad and unk are never sampled: :func:`never_sampled`). Prompts of one
    token length are generated together, so nothing is padded; the sampling draws from its own seeded stream (the
    global generator is left as it was)."""
    import torch

    ids = [tokenizer(p)["input_ids"] for p in prompts]
    out: list[list[str]] = [[] for _ in prompts]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for length in sorted({len(x) for x in ids}):
            rows = [i for i, x in enumerate(ids) if len(x) == length]
            flat = [i for i in rows for _ in range(k)]
            for start in range(0, len(flat), batch):
                part = flat[start:start + batch]
                x = torch.tensor([ids[i] for i in part], device=device)
                gen = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=True,
                                     temperature=temperature, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                     suppress_tokens=never_sampled(tokenizer) or None)
                for i, row in zip(part, gen[:, length:].tolist(), strict=True):
                    if tokenizer.eos_token_id in row:
                        row = row[:row.index(tokenizer.eos_token_id)]
                    out[i].append(str(tokenizer.decode(row, skip_special_tokens=True)))
    model.train(was_training)
    return out


def true_score(model: Any, tokenizer: PreTrainedTokenizerFast, task: Task, *, split: str = "test", n: int = 500,
               seed: int = 0, temperature: float = 1.0, max_new_tokens: int = 8) -> float:
    """The hidden true score of a policy: mean ``task.score`` of one sampled response on each of ``n`` prompts."""
    prompts = task.prompts(split, n, seed)  # type: ignore[arg-type]
    responses = sample_responses(model, tokenizer, prompts, 1, temperature=temperature,
                                 max_new_tokens=max_new_tokens, seed=seed)
    return sum(task.score(p, r[0]) for p, r in zip(prompts, responses, strict=True)) / len(prompts)
