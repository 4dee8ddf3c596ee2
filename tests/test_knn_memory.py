"""The nearest-neighbour memory (`knn_memory`): its vote, its fit on validation, saving and loading,
and a fine-tuning run that keeps one."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import make_dialogues, tiny_config, write_jsonl
from emotion_predictor.data.utils import prepare_splits
from emotion_predictor.errors import UserError
from emotion_predictor.evaluation.metrics import classification_metrics
from emotion_predictor.modeling.knn_memory import (
    MEMORY_FILE,
    KnnMemory,
    MemoryQueries,
    fit_given_emotion_weight,
    fit_memory,
    load_memory,
    save_memory,
)
from emotion_predictor.prediction.decision import decide_with_metadata
from emotion_predictor.prediction.forecast import classifier_and_queries, predict_proba
from emotion_predictor.prediction.inference import load_classifier, model_outputs
from emotion_predictor.prediction.predictor import EmotionPredictor
from emotion_predictor.training.recipe import run_fine_tuning

UNIFORM = np.full(7, 1 / 7)


def one_turn_memory(texts, labels: list[int], prior=UNIFORM, **settings) -> KnnMemory:
    """A memory whose row i is keyed on text i alone."""
    rows = torch.arange(len(labels))
    return KnnMemory(
        torch.as_tensor(texts), rows, torch.full_like(rows, -1), torch.tensor(labels), np.asarray(prior), **settings
    )


def axis_memory(labels: list[int], prior=UNIFORM, **settings) -> KnnMemory:
    """Memory row i lies on axis i: each row is its own nearest neighbour."""
    return one_turn_memory(torch.eye(len(labels), 8), labels, prior, **settings)


def test_vote_weights_the_nearest_rows_and_moves_to_the_train_prior():
    # Memory labels: three neutral, one anger (memory prior 0.75 / 0.25); the model's train prior is 0.5 / 0.5.
    memory = axis_memory([0, 0, 0, 1], prior=[0.5, 0.5, 0, 0, 0, 0, 0])
    query = np.array([[1.0, 0, 0, 1.0, 0, 0, 0, 0]])  # equally near rows 0 (neutral) and 3 (anger)
    similarities, indices = memory.nearest(MemoryQueries(query), 2)
    assert sorted(indices[0].tolist()) == [0, 3]
    assert similarities[0].tolist() == pytest.approx([2**-0.5] * 2)
    # Half the vote each, then x0.5/0.75 for neutral and x0.5/0.25 for anger: 1/3 against 1, i.e. 0.25 / 0.75.
    assert memory.vote(similarities, indices, 2, 0.05)[0, :2] == pytest.approx([0.25, 0.75])
    # With one neighbour the vote is that row's label alone.
    one = memory.vote(*memory.nearest(MemoryQueries(np.array([[0, 0, 1.0, 0, 0, 0, 0, 0]])), 1), 1, 0.05)
    assert one[0].tolist() == pytest.approx([1, 0, 0, 0, 0, 0, 0])


def test_mix_is_the_weighted_mean_and_weight_zero_is_the_classifier():
    memory = axis_memory([4, 5], neighbours=1, temperature=0.05)
    probs = np.tile(UNIFORM, (2, 1)).astype(np.float32)
    queries = MemoryQueries(np.eye(2, 8))
    memory.weight = 0.0
    assert memory.mix(probs, queries) is probs
    memory.weight = 0.25
    expected = 0.75 * probs + 0.25 * np.eye(7)[[4, 5]]
    np.testing.assert_allclose(memory.mix(probs, queries), expected, atol=1e-6)


def test_a_two_turn_key_matches_on_both_turns_and_stores_each_text_once():
    # Three distinct texts; row 1 starts its dialogue, rows 0 and 2 share their previous text.
    texts = torch.tensor([[3.0, 0], [0, 2.0], [1.0, 1.0]])
    memory = KnnMemory(
        texts, torch.tensor([0, 1, 0]), torch.tensor([1, -1, 2]), torch.tensor([0, 1, 2]), UNIFORM, key_turns=2
    )
    assert memory.texts.shape == (3, 2)
    # Each part is compared by its cosine; the key's cosine is their sum over the two keys' lengths.
    query = MemoryQueries(np.array([[1.0, 0]]), np.array([[0, 5.0]]))
    similarities, indices = memory.nearest(query, 3)
    assert indices[0].tolist() == [0, 2, 1]
    assert similarities[0].tolist() == pytest.approx([1.0, (1 + 2**-0.5) / 2, 0.0], abs=1e-3)
    # A row without a previous utterance is as near as its text alone allows (its key is shorter).
    alone = MemoryQueries(np.array([[0, 1.0]]), np.array([[0.0, 0]]))
    assert memory.nearest(alone, 1)[1][0].tolist() == [1]


def test_the_emotion_part_matches_recognised_distributions_with_gold_emotions():
    # Two rows with the same text, one remembered with anger then sadness, one with joy then joy.
    texts = torch.tensor([[1.0, 0]])
    emotions = torch.tensor([[1, 5], [4, 4]])
    memory = KnnMemory(
        texts, torch.tensor([0, 0]), torch.tensor([-1, -1]), torch.tensor([1, 4]), UNIFORM, emotions, emotion_weight=1.0
    )
    assert memory.trajectory_turns == 2
    angry = np.zeros((1, 2, 7))
    angry[0, 0, 1], angry[0, 0, 0], angry[0, 1, 5] = 0.8, 0.2, 1.0
    similarities, indices = memory.nearest(MemoryQueries(np.array([[1.0, 0]]), emotions=angry), 2)
    assert indices[0].tolist() == [0, 1]
    # The emotion part's dot product is the probability the query's turns carry the row's emotions.
    query_norm = np.sqrt(1 + 0.8**2 + 0.2**2 + 1)
    assert similarities[0].tolist() == pytest.approx([(1 + 0.8 + 1) / (query_norm * 3**0.5), 1 / (query_norm * 3**0.5)])
    # Without its weight the part is left out: both rows are the text's.
    memory.emotion_weight = 0.0
    assert memory.nearest(MemoryQueries(np.array([[1.0, 0]]), emotions=angry), 2)[0][0].tolist() == pytest.approx(
        [1, 1]
    )


def fit_by_accuracy(labels: np.ndarray):
    def fit(probs: np.ndarray):
        accuracy = classification_metrics(labels, probs.argmax(-1))["Accuracy"]
        return {"decision_rule": "argmax"}, (True, accuracy)

    return fit


def test_fit_keeps_a_memory_that_helps_and_drops_one_that_does_not():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 300)
    # Validation rows sit next to memory rows of their own label; the classifier guesses at random.
    centres = rng.normal(size=(7, 16))
    queries = centres[labels] + 0.1 * rng.normal(size=(300, 16))
    memory_labels = np.repeat(np.arange(7), 40)
    memory_rows = torch.tensor(centres[memory_labels] + 0.1 * rng.normal(size=(280, 16)))
    guessing = rng.dirichlet(np.ones(7), 300)
    queries = MemoryQueries(queries)
    helpful = one_turn_memory(memory_rows, memory_labels)
    _, (_, score) = fit_memory(helpful, guessing, queries, fit_by_accuracy(labels))
    assert helpful.weight > 0 and score > 0.95
    # A perfect classifier and a memory whose labels are shuffled: the classifier alone wins.
    perfect = np.eye(7)[labels] * 0.9 + 0.1 / 7
    useless = one_turn_memory(memory_rows, rng.permutation(memory_labels))
    _, (_, score) = fit_memory(useless, perfect, queries, fit_by_accuracy(labels))
    assert useless.weight == 0 and score == 1.0


@pytest.fixture(scope="module", params=[1, 2], ids=["key1turn", "key2turns"])
def memory_run(request, tmp_path_factory, tiny_model_dir):
    """A full fine-tune of 4 steps whose validation and test dialogues also occur in train (as a
    quarter of DailyDialog's test utterances do): the memory finds them, the classifier cannot yet.
    Its memory is keyed on one turn, then on two (`knn_memory_turns`)."""
    data = tmp_path_factory.mktemp("duplicated_dialogues")
    train = make_dialogues(120, 1)
    write_jsonl(str(data / "train.jsonl"), train)
    write_jsonl(str(data / "validation.jsonl"), train[:30])
    write_jsonl(str(data / "test.jsonl"), train[30:60])
    out = str(tmp_path_factory.mktemp("memory_run"))
    result = run_fine_tuning(
        *tiny_config(
            tiny_model_dir,
            str(data),
            out,
            use_lora=False,
            max_steps=4,
            neutral_keep_ratio=0.5,
            knn_memory="train_split",
            knn_memory_turns=request.param,
            decision_rule="prior_corrected",
        )
    )
    return out, str(data), result.metrics


def test_a_run_keeps_the_memory_that_validation_rewards(memory_run):
    out, data, metrics = memory_run
    settings = metrics["knn_memory"]
    every_train_row = len(prepare_splits(data, ["train"]).splits["train"])
    assert settings["rows"] == "train_split" and settings["size"] == every_train_row
    with open(os.path.join(out, "run_config.json"), encoding="utf-8") as handle:
        assert settings["key_turns"] == json.load(handle)["knn_memory_turns"]
    assert settings["weight"] > 0
    assert metrics["validation"]["Macro_F1"] > metrics["validation_classifier_alone"]["Macro_F1"] + 0.2
    with open(os.path.join(out, "model", "emotion_predictor.json"), encoding="utf-8") as handle:
        assert json.load(handle)["knn_memory"] == settings
    with open(os.path.join(out, "run_config.json"), encoding="utf-8") as handle:
        assert json.load(handle)["knn_memory"] == "train_split"
    with open(os.path.join(out, "report.txt"), encoding="utf-8") as handle:
        expected = (
            f"mixed with a knn memory of {every_train_row:,} train_split rows keyed on {settings['key_turns']} turn"
        )
        assert expected in handle.read()


def test_every_loader_forecasts_with_the_saved_memory(memory_run):
    out, data, metrics = memory_run
    classifier = load_classifier(out, device="cpu")
    assert classifier.memory is not None and len(classifier.memory.labels) == metrics["knn_memory"]["size"]
    key_turns = classifier.memory.key_turns
    assert classifier.memory.texts.shape[1] == classifier.model.config.hidden_size
    # Each distinct text once: fewer texts than rows for a two-turn key that shares them.
    assert len(classifier.memory.texts) <= len(classifier.memory.labels)
    test = prepare_splits(data, ["test"]).splits["test"]
    turns, previous = test["turns"].tolist(), test["previous_text"].tolist()
    probs = predict_proba(classifier, turns, previous=previous)
    alone, queries = classifier_and_queries(classifier, key_turns, 0, turns, previous)
    np.testing.assert_allclose(probs, classifier.memory.mix(alone, queries), atol=1e-6)
    assert not np.allclose(probs, alone, atol=1e-3)
    if key_turns == 2:
        # The previous utterance's part is its embedding alone, reused from the rows that score it.
        later = next(i for i, text in enumerate(previous) if text)
        alone_previous = model_outputs(classifier, [[previous[later]]], embed=True)[1][0]
        np.testing.assert_allclose(queries.previous[later], alone_previous, atol=1e-4)
        with pytest.raises(ValueError, match="needs each row's previous utterance"):
            predict_proba(classifier, turns)
    # The saved model reproduces the run's own test figures, and the predictor forecasts the same.
    predicted = decide_with_metadata(probs, classifier.metadata)
    labels = test["label"].to_numpy()
    weights = classifier.metadata["f1_all_class_weights"]
    assert classification_metrics(labels, predicted, weights)["Macro_F1"] == pytest.approx(
        metrics["test"]["Macro_F1"], abs=1e-6
    )
    predictor = EmotionPredictor.from_pretrained(out, device="cpu")
    for row in (0, next(i for i, text in enumerate(previous) if text)):
        history = [previous[row], *turns[row]] if previous[row] else turns[row]
        forecast = predictor.predict(history)
        assert list(forecast.probabilities.values()) == pytest.approx(probs[row].tolist(), abs=1e-5)


def test_a_conversation_embeds_each_utterance_once(memory_run):
    out, data, _ = memory_run
    first, second, third = prepare_splits(data, ["test"]).splits["test"]["text"].tolist()[:3]
    predictor = EmotionPredictor.from_pretrained(out, device="cpu")
    key_turns = predictor.classifier.memory.key_turns
    passes = []
    predictor.classifier.model.register_forward_hook(lambda *_: passes.append(1))
    predictor.predict([first, second])
    # A two-turn key embeds the previous utterance alone, in the same forward pass as the row.
    assert len(passes) == 1 and key_turns in (1, 2)
    passes.clear()
    forecast = predictor.predict([first, second, third])
    # The previous utterance was the last one of the forecast before: it is not embedded again.
    assert len(passes) == 1
    fresh = EmotionPredictor.from_pretrained(out, device="cpu").predict([first, second, third])
    assert list(forecast.probabilities.values()) == pytest.approx(list(fresh.probabilities.values()), abs=1e-5)


def counting_rows(module, rows: list[int]):
    """`module` (a torch runner's forward), noting how many rows each call embeds."""

    def forward(input_ids, attention_mask):
        rows.append(len(input_ids))
        return module(input_ids, attention_mask)

    return forward


def test_a_memory_fitted_out_costs_no_search_and_no_second_utterance(memory_run, monkeypatch):
    out, data, _ = memory_run
    classifier = load_classifier(out, device="cpu")
    classifier.memory.weight = 0.0  # what a fit that the classifier alone wins on validation leaves
    monkeypatch.setattr(classifier.memory, "mix", lambda *_: pytest.fail("mixed a memory of weight 0"))
    test = prepare_splits(data, ["test"]).splits["test"]
    # Every other row: their previous utterances are not rows themselves, so a query would embed them.
    turns, previous = test["turns"].tolist()[1:9:2], test["previous_text"].tolist()[1:9:2]
    rows = []
    monkeypatch.setattr(classifier.runner, "module", counting_rows(classifier.runner.module, rows))
    probs = predict_proba(classifier, turns, previous=previous)
    assert sum(rows) == len(turns) and any(previous)  # the rows alone: no previous utterance embedded
    np.testing.assert_allclose(probs, model_outputs(classifier, turns)[0], atol=1e-6)


def test_a_missing_or_broken_memory_file_is_one_clear_error(memory_run, tmp_path):
    out, _, _ = memory_run
    folder = str(tmp_path / "model")
    shutil.copytree(os.path.join(out, "model"), folder)
    os.remove(os.path.join(folder, MEMORY_FILE))
    with pytest.raises(UserError, match=f"{MEMORY_FILE} is missing .*copy the whole model folder"):
        load_classifier(folder, device="cpu")
    with open(os.path.join(folder, MEMORY_FILE), "wb") as handle:
        handle.write(b"not safetensors")
    with pytest.raises(UserError, match="not a readable knn memory"):
        load_classifier(folder, device="cpu")
    # Embeddings of another width than the model's: one line, not a shape error at forecast time.
    tensors = load_file(os.path.join(out, "model", MEMORY_FILE))
    save_file({**tensors, "texts": tensors["texts"][:, :-1].contiguous()}, os.path.join(folder, MEMORY_FILE))
    with pytest.raises(UserError, match="knn memory embeddings have .* values, the model's hidden size is"):
        load_classifier(folder, device="cpu")


def test_saved_memory_round_trips_and_checks_its_size(tmp_path):
    memory = axis_memory([0, 1, 2], neighbours=2, temperature=0.1, weight=0.5)
    save_memory(str(tmp_path), memory)
    settings = memory.settings("trained_rows")
    metadata = {"train_prior": UNIFORM.tolist(), "knn_memory": settings}
    loaded = load_memory(str(tmp_path), metadata)
    assert loaded.labels.tolist() == [0, 1, 2] and loaded.settings("trained_rows") == settings
    assert torch.equal(loaded.texts, memory.texts) and torch.equal(loaded.previous, memory.previous)
    assert load_memory(str(tmp_path), {**metadata, "knn_memory": {**settings, "weight": 0.0}}) is None
    assert load_memory(str(tmp_path), {"train_prior": UNIFORM.tolist()}) is None
    # Models saved before knn_memory_turns existed key on one turn.
    older = {k: v for k, v in settings.items() if k != "key_turns"}
    assert load_memory(str(tmp_path), {**metadata, "knn_memory": older}).key_turns == 1
    with pytest.raises(UserError, match="holds 3 rows, emotion_predictor.json says 4"):
        load_memory(str(tmp_path), {**metadata, "knn_memory": {**settings, "size": 4}})


def test_a_memory_saved_before_the_compact_layout_loads_with_the_same_neighbours(tmp_path):
    """Files of one normalised key row per memory row ([current, previous] halves for two turns)."""
    current = torch.nn.functional.normalize(torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]), dim=1)
    previous = torch.tensor([[0, 1.0, 0], [0, 0, 0], [1.0, 0, 0]])
    keys = torch.nn.functional.normalize(torch.cat([current, previous], dim=1), dim=1).half()
    save_file({"embeddings": keys, "labels": torch.tensor([3, 4, 5])}, str(tmp_path / MEMORY_FILE))
    settings = {"rows": "train_split", "size": 3, "key_turns": 2, "neighbours": 2, "temperature": 0.1, "weight": 1.0}
    loaded = load_memory(str(tmp_path), {"train_prior": UNIFORM.tolist(), "knn_memory": settings})
    assert loaded.previous.tolist() == [3, -1, 4] and len(loaded.texts) == 5
    query = MemoryQueries(np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    similarities, indices = loaded.nearest(query, 3)
    old = (torch.nn.functional.normalize(torch.tensor([[1.0, 0, 0, 0, 1.0, 0]]), dim=1) @ keys.float().T)[0]
    assert indices[0].tolist() == old.argsort(descending=True).tolist()
    assert similarities[0].tolist() == pytest.approx(old.sort(descending=True).values.tolist(), abs=2e-3)


def test_approximate_search_finds_the_exact_neighbours_and_forecasts_alike(memory_run, monkeypatch):
    """The HNSW index over the same keys: recall of the exact search's neighbours, and the forecast;
    `auto` builds it from `APPROXIMATE_ABOVE` rows (DailyDialog's whole train split)."""
    from emotion_predictor.modeling import memory_index
    from emotion_predictor.modeling.memory_index import use_approximate_search

    assert memory_index.APPROXIMATE_ABOVE <= 76_052  # the whole train split is searched approximately

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 32))
    texts = torch.tensor(centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 32)), dtype=torch.float32)
    rows = torch.arange(3000)
    memory = KnnMemory(
        texts, rows, torch.roll(rows, 1), torch.tensor(rng.integers(0, 7, 3000)), UNIFORM, key_turns=2, neighbours=32
    )
    queries = MemoryQueries(texts[:200].numpy() + 0.1, texts[1:201].numpy())
    exact = memory.nearest(queries, 32)
    assert not use_approximate_search(memory, "auto")  # 3,000 rows: below the threshold
    assert use_approximate_search(memory, "approximate")
    exact_only = KnnMemory(texts, rows, torch.roll(rows, 1), memory.labels, UNIFORM, key_turns=2, neighbours=32)
    monkeypatch.setattr(memory_index, "APPROXIMATE_ABOVE", 3000)
    assert use_approximate_search(exact_only, "auto") and exact_only.approximate is not None  # from the threshold on
    assert not use_approximate_search(KnnMemory(texts, rows, rows, memory.labels, UNIFORM), "exact")
    approximate = memory.nearest(queries, 32)
    recall = np.mean([len(set(a) & set(e)) / 32 for a, e in zip(approximate[1].tolist(), exact[1].tolist())])
    assert recall >= 0.95
    np.testing.assert_allclose(approximate[0][:, 0], exact[0][:, 0], atol=2e-3)  # the same cosines, in float16
    # A saved model loaded with approximate search forecasts like the exact one on its tiny memory.
    out, data, _ = memory_run
    test = prepare_splits(data, ["test"]).splits["test"]
    turns, previous = test["turns"].tolist(), test["previous_text"].tolist()
    probs = {
        search: predict_proba(load_classifier(out, device="cpu", knn_search=search), turns, previous=previous)
        for search in ("exact", "approximate")
    }
    # Approximate: a near-tie at the edge of the neighbours may swap (a tiny random model's
    # embeddings are nearly alike), so the forecasts agree as a whole, not to every digit.
    labels_agree = (probs["approximate"].argmax(1) == probs["exact"].argmax(1)).mean()
    assert labels_agree >= 0.95 and np.abs(probs["approximate"] - probs["exact"]).mean() <= 0.005


def test_rows_whose_emotions_are_all_given_use_the_given_emotion_weight():
    # One text; the memory rows differ by their emotions alone: anger rows forecast anger, joy rows joy.
    emotions = torch.tensor([[1, 1]] * 4 + [[4, 4]] * 4)
    labels = [1] * 4 + [4] * 4
    memory = KnnMemory(
        torch.tensor([[1.0, 0]]),
        torch.zeros(8, dtype=torch.long),
        torch.full((8,), -1),
        torch.tensor(labels),
        UNIFORM,
        emotions,
        neighbours=4,
        temperature=0.05,
        weight=1.0,
    )
    angry = np.zeros((2, 2, 7))
    angry[:, :, 1] = 1.0
    queries = MemoryQueries(np.array([[1.0, 0]] * 2), emotions=angry, given=np.array([True, False]))
    memory.emotion_weight, memory.given_emotion_weight = 0.0, 1.0
    similarities, indices = memory.nearest(queries, 8)
    # Given: the emotions find the four anger rows first (cosine 1), then the joy rows (1/3).
    assert sorted(indices[0, :4].tolist()) == [0, 1, 2, 3]
    assert similarities[0].tolist() == pytest.approx([1.0] * 4 + [1 / 3] * 4)
    # Recognised (weight 0 here): the text alone, every row alike.
    assert similarities[1].tolist() == pytest.approx([1.0] * 8)
    # The fit picks a given weight above 0 when the given emotions decide the validation labels.
    given = MemoryQueries(np.array([[1.0, 0]] * 2), emotions=np.eye(7)[[[1, 1], [4, 4]]], given=np.ones(2, dtype=bool))
    memory.given_emotion_weight = 0.0
    fit_given_emotion_weight(memory, np.full((2, 7), 1 / 7), given, fit_by_accuracy(np.array([1, 4])))
    assert memory.given_emotion_weight > 0
