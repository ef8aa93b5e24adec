"""The LM stages' pieces (Rossi ch. 15): the reward-model losses against hand computations and library
equivalents, the SFT likelihood against transformers' own loss, the tasks' hidden scorers on hand examples, the
tokenizer, the sampler's determinism, and the one-line errors for a bad model directory."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lrl.algos.lm_reward.loss import four_way_loss, kwise_loss, pair_accuracy, pair_indices, pairwise_loss
from lrl.errors import RecipeError
from lrl.lm.models import (
    build_tiny_lm,
    build_tokenizer,
    encode,
    load_causal_lm,
    load_reward_model,
    sample_responses,
    tiny_lm,
    train_tokenizer,
)
from lrl.lm.task import get_task

pytest.importorskip("transformers")


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# --- reward-model losses ---------------------------------------------------------------------------------------
def test_pairwise_loss_is_bce_with_logits_on_hand_numbers() -> None:
    r0, r1, b = torch.tensor([1.0, -0.5, 2.0]), torch.tensor([0.0, 0.5, 2.5]), torch.tensor([0.0, 1.0, 1.0])
    hand = -(math.log(_sig(1.0)) + math.log(_sig(1.0)) + math.log(_sig(0.5))) / 3  # eq. 15.4, term by term
    assert pairwise_loss(r0, r1, b).item() == pytest.approx(hand, rel=1e-6)
    assert pairwise_loss(r0, r1, b).item() == pytest.approx(F.binary_cross_entropy_with_logits(r1 - r0, b).item())


def test_kwise_loss_averages_the_six_pairs_of_k4_per_prompt() -> None:
    i, j = pair_indices(4)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == list(itertools.combinations(range(4), 2))
    rewards = torch.tensor([[0.3, -1.0, 2.0, 0.5], [1.0, 1.5, -0.2, 0.0]])
    utility = torch.tensor([[0.9, 0.1, 0.5, 0.7], [0.0, 0.2, 0.8, 0.4]])
    per_prompt = []
    for r, u in zip(rewards.tolist(), utility.tolist(), strict=True):  # slow reference: eq. 15.6 pair by pair
        terms = [-math.log(_sig(r[a] - r[c])) if u[a] > u[c] else -math.log(_sig(r[c] - r[a]))
                 for a, c in itertools.combinations(range(4), 2)]
        assert len(terms) == 6
        per_prompt.append(sum(terms) / 6)
    assert kwise_loss(rewards, utility).item() == pytest.approx(sum(per_prompt) / 2, rel=1e-6)
    # K = 2 is the pairwise loss
    b = (utility[:, 1] > utility[:, 0]).float()
    assert kwise_loss(rewards[:, :2], utility[:, :2]).item() == pytest.approx(
        pairwise_loss(rewards[:, 0], rewards[:, 1], b).item())


def test_four_way_loss_is_cross_entropy_over_four_logits() -> None:
    rewards = torch.tensor([[0.1, 2.0, -1.0, 0.5], [3.0, 0.0, 0.0, 1.0]])
    best = torch.tensor([1, 3])
    hand = -(math.log(math.exp(2.0) / sum(math.exp(x) for x in rewards[0].tolist()))
             + math.log(math.exp(1.0) / sum(math.exp(x) for x in rewards[1].tolist()))) / 2
    assert four_way_loss(rewards, best).item() == pytest.approx(hand, rel=1e-6)
    assert four_way_loss(rewards, best).item() == pytest.approx(F.cross_entropy(rewards, best).item())
    with pytest.raises(ValueError, match="4 candidates"):
        four_way_loss(rewards[:, :3], best)


def test_pair_accuracy_skips_ties() -> None:
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    right, counted = pair_accuracy(rewards, torch.tensor([[0.5, 0.5, 1.0]]))  # pair (0, 1) tied: not counted
    assert (right.item(), counted.item()) == (2, 2)
    right, counted = pair_accuracy(rewards, torch.tensor([[0.0, 1.0, 1.0]]))  # (0, 1) wrong, (0, 2) right
    assert (right.item(), counted.item()) == (1, 2)


# --- SFT likelihood ---------------------------------------------------------------------------------------------
def test_token_nll_equals_transformers_loss_with_pads_ignored() -> None:
    from lrl.algos.lm_sft.module import token_nll

    tok = train_tokenizer(get_task("reverse"))
    torch.manual_seed(0)
    model = tiny_lm(tok, n_layer=1, n_embd=16)
    enc = encode(tok, ["123>321", "45>5", "9876>6789"], 12)
    logits = model(**enc).logits
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    ref = model(**enc, labels=labels).loss
    assert token_nll(logits, enc["input_ids"], enc["attention_mask"]).item() == pytest.approx(ref.item(), rel=1e-5)


# --- tasks --------------------------------------------------------------------------------------------------------
def test_reverse_scorer_on_hand_examples() -> None:
    task = get_task("reverse")
    assert task.score("3817>", "7183") == 1.0
    assert task.score("3817>", "7193") == 0.75
    assert task.score("3817>", "71834") == pytest.approx(4 / 5)  # one digit too many
    assert task.score("3817>", "71") == 0.5
    assert task.score("3817>", "") == 0.0
    assert task.score("3817>", "1837") == 0.0


def test_arith_scorer_on_hand_examples() -> None:
    task = get_task("arith")
    assert task.score("12+7=", "19") == 1.0
    assert task.score("12+7=", "20") == 0.75
    assert task.score("12+7=", "17") == 0.5
    assert task.score("12+7=", "30") == 0.0
    assert task.score("12+7=", "1+9") == 0.0


@pytest.mark.parametrize("name", ["reverse", "arith"])
def test_task_splits_are_disjoint_and_corpus_is_noisy(name: str) -> None:
    task = get_task(name)
    train, test = set(task.prompts("train", 3000, 0)), set(task.prompts("test", 500, 0))
    assert train and test and not train & test
    corpus = task.corpus(2000, 1)
    cut = ">" if name == "reverse" else "="
    scores = [task.score(t.split(cut)[0] + cut, t.split(cut)[1]) for t in corpus]
    mean = sum(scores) / len(scores)
    assert 0.5 < mean < 0.8  # the sloppy annotator: room between SFT and the ceiling 1.0
    assert all(t.split(cut)[0] + cut not in test for t in corpus)
    assert task.corpus(50, 3) == task.corpus(50, 3) and task.corpus(50, 3) != task.corpus(50, 4)


def test_unknown_task_is_one_line() -> None:
    with pytest.raises(RecipeError, match="unknown LM task 'nope'; known: arith, reverse"):
        get_task("nope")


# --- tokenizer, models, loaders ---------------------------------------------------------------------------------
def test_tokenizer_round_trip_and_special_tokens(tmp_path: Path) -> None:
    tok = build_tokenizer(get_task("reverse"), tmp_path / "tok")
    for text in ["3817>7183", "0>0", "99999>99999"]:
        ids = tok(text)["input_ids"]
        assert len(ids) == len(text) and tok.decode(ids) == text
    assert tok.pad_token == "<pad>" and tok.eos_token == "<eos>" and tok.pad_token_id != tok.eos_token_id
    enc = encode(tok, ["12>21"], 8)
    assert enc["input_ids"][0].tolist()[:7] == [*tok("12>21")["input_ids"], tok.eos_token_id, tok.pad_token_id]
    assert enc["attention_mask"][0].tolist() == [1] * 6 + [0] * 2
    assert train_tokenizer(get_task("reverse")).get_vocab() == tok.get_vocab()  # deterministic


def test_tiny_model_saved_and_loaded_as_causal_lm_and_reward_model(tmp_path: Path) -> None:
    tok = train_tokenizer(get_task("reverse"))
    torch.manual_seed(0)
    path = build_tiny_lm(tok, tmp_path / "m", n_layer=1, n_embd=16)
    model, tok2 = load_causal_lm(path)
    assert tok2.get_vocab() == tok.get_vocab() and model.config.n_layer == 1
    rm, _ = load_reward_model(path)
    assert rm.config.num_labels == 1 and rm.config.pad_token_id == tok.pad_token_id
    torch.testing.assert_close(rm.base_model.wte.weight, model.transformer.wte.weight)  # the body is the LM's
    enc = encode(tok, ["12>21", "345>543"], 10)
    assert rm(**enc).logits.shape == (2, 1)


def test_not_a_model_directory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"^data\.model=.*nowhere: no such directory") as err:
        load_causal_lm(tmp_path / "nowhere", "data.model")
    assert "\n" not in err.value.message
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecipeError, match="no tokenizer found there") as err:
        load_causal_lm(tmp_path / "empty", "data.model")
    assert "\n" not in err.value.message
    tok = train_tokenizer(get_task("reverse"))
    tok.save_pretrained(str(tmp_path / "tok-only"))
    with pytest.raises(RecipeError, match="not a transformers model directory") as err:
        load_causal_lm(tmp_path / "tok-only", "data.model")
    assert "\n" not in err.value.message


def test_tokenizer_larger_than_the_model_vocab_is_one_line(tmp_path: Path) -> None:
    small = train_tokenizer(get_task("reverse"))  # 14 tokens
    big = train_tokenizer(get_task("arith"))  # 15 tokens ('+', '=')
    path = build_tiny_lm(small, tmp_path / "m", n_layer=1, n_embd=16)
    big.save_pretrained(str(path))
    with pytest.raises(RecipeError, match=r"its tokenizer has 15 tokens but the model's embedding has 14 rows") as err:
        load_causal_lm(path, "data.model")
    assert "\n" not in err.value.message


def test_sampling_is_seeded_and_leaves_the_global_generator_alone() -> None:
    tok = train_tokenizer(get_task("reverse"))
    torch.manual_seed(0)
    model = tiny_lm(tok, n_layer=1, n_embd=16)
    prompts = ["12>", "345>", "6789>"]
    state = torch.get_rng_state()
    a = sample_responses(model, tok, prompts, 3, temperature=1.0, max_new_tokens=5, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert a == sample_responses(model, tok, prompts, 3, temperature=1.0, max_new_tokens=5, seed=7)
    assert a != sample_responses(model, tok, prompts, 3, temperature=1.0, max_new_tokens=5, seed=8)
    assert [len(r) for r in a] == [3, 3, 3] and all(len(x) <= 5 for r in a for x in r)


# --- the reward module's update against hand-written references ------------------------------------------------
def _reward_module(tmp_path: Path, **kwargs: object) -> tuple[object, object]:
    from lrl.algos.lm_reward.module import LMReward
    from lrl.spec import Spec

    tok = train_tokenizer(get_task("reverse"))
    torch.manual_seed(0)
    path = build_tiny_lm(tok, tmp_path / "policy", n_layer=1, n_embd=16)
    spec = Spec(str(path), (12,), "token", len(tok), obs_kind="tokens", vocab_size=len(tok))
    return LMReward(spec, **kwargs), tok  # type: ignore[arg-type]


def _prefs(tok: object, k: int) -> dict[str, torch.Tensor]:
    texts = [t for i, t in enumerate(["12>21", "12>2", "12>11", "12>213", "345>543", "345>5", "345>", "345>544"])
             if i % 4 < k]  # the first k responses of each of the 2 prompts
    enc = encode(tok, texts, 12)  # type: ignore[arg-type]
    utility = torch.tensor([[0.9, 0.2, 0.5, 0.1], [0.3, 0.8, 0.0, 0.6]])[:, :k]
    return {"input_ids": enc["input_ids"].view(2, k, 12), "attention_mask": enc["attention_mask"].view(2, k, 12),
            "utility": utility}


@pytest.mark.parametrize("loss", ["kwise", "pairwise", "four_way"])
def test_reward_losses_read_the_score_at_end_of_sequence(tmp_path: Path, loss: str) -> None:
    module, tok = _reward_module(tmp_path, loss=loss)
    td = _prefs(tok, 4)
    model = module.model  # type: ignore[attr-defined]
    # hand reference: the score head on the final hidden state at the last non-pad token (the eos)
    hidden = model.base_model(input_ids=td["input_ids"].view(8, 12), attention_mask=td["attention_mask"].view(8, 12))
    last = td["attention_mask"].view(8, 12).sum(-1) - 1
    assert (td["input_ids"].view(8, 12)[torch.arange(8), last] == tok.eos_token_id).all()  # type: ignore[attr-defined]
    r = model.score(hidden.last_hidden_state[torch.arange(8), last]).view(2, 4)
    u = td["utility"]
    expected = {"kwise": kwise_loss(r, u), "pairwise": pairwise_loss(r[:, 0], r[:, 1], (u[:, 1] > u[:, 0]).float()),
                "four_way": four_way_loss(r, u.argmax(-1))}[loss]
    out = module.losses(td)  # type: ignore[attr-defined]
    torch.testing.assert_close(out["loss"], expected, rtol=1e-5, atol=1e-6)


def test_four_way_with_fewer_than_four_responses_is_one_line(tmp_path: Path) -> None:
    module, tok = _reward_module(tmp_path, loss="four_way")
    with pytest.raises(RecipeError, match=r"algo.loss=four_way reads 4 responses per prompt but data.k=2"):
        module.losses(_prefs(tok, 2))  # type: ignore[attr-defined]


def test_frozen_body_trains_the_score_head_only(tmp_path: Path) -> None:
    module, tok = _reward_module(tmp_path, frozen_body=True)
    module.losses(_prefs(tok, 4))["loss"].backward()  # type: ignore[attr-defined]
    model = module.model  # type: ignore[attr-defined]
    assert all(p.grad is None and not p.requires_grad for p in model.base_model.parameters())
    assert model.score.weight.grad is not None and model.score.weight.grad.abs().sum() > 0
