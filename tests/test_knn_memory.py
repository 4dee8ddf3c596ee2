"""The nearest-neighbour memory (`knn_memory`): its vote, its fit on validation, saving and loading,
and a fine-tuning run that keeps one."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from conftest import make_dialogues, tiny_config, write_jsonl
from emotion_predictor.data.utils import prepare_splits
from emotion_predictor.errors import UserError
from emotion_predictor.evaluation.metrics import classification_metrics
from emotion_predictor.modeling.knn_memory import (
    MEMORY_FILE,
    KnnMemory,
    fit_memory,
    load_memory,
    memory_keys,
    save_memory,
)
from emotion_predictor.prediction.decision import decide_with_metadata
from emotion_predictor.prediction.inference import load_classifier, memory_queries, model_outputs, predict_proba
from emotion_predictor.prediction.predictor import EmotionPredictor
from emotion_predictor.training.recipe import run_fine_tuning

UNIFORM = np.full(7, 1 / 7)


def axis_memory(labels: list[int], prior=UNIFORM, **settings) -> KnnMemory:
    """Memory row i lies on axis i: each row is its own nearest neighbour."""
    return KnnMemory(torch.eye(len(labels), 8), torch.tensor(labels), np.asarray(prior), **settings)


def test_vote_weights_the_nearest_rows_and_moves_to_the_train_prior():
    # Memory labels: three neutral, one anger (memory prior 0.75 / 0.25); the model's train prior is 0.5 / 0.5.
    memory = axis_memory([0, 0, 0, 1], prior=[0.5, 0.5, 0, 0, 0, 0, 0])
    query = np.array([[1.0, 0, 0, 1.0, 0, 0, 0, 0]])  # equally near rows 0 (neutral) and 3 (anger)
    similarities, indices = memory.nearest(query, 2)
    assert sorted(indices[0].tolist()) == [0, 3]
    assert similarities[0].tolist() == pytest.approx([2**-0.5] * 2)
    # Half the vote each, then x0.5/0.75 for neutral and x0.5/0.25 for anger: 1/3 against 1, i.e. 0.25 / 0.75.
    assert memory.vote(similarities, indices, 2, 0.05)[0, :2] == pytest.approx([0.25, 0.75])
    # With one neighbour the vote is that row's label alone.
    one = memory.vote(*memory.nearest(np.array([[0, 0, 1.0, 0, 0, 0, 0, 0]]), 1), 1, 0.05)
    assert one[0].tolist() == pytest.approx([1, 0, 0, 0, 0, 0, 0])


def test_mix_is_the_weighted_mean_and_weight_zero_is_the_classifier():
    memory = axis_memory([4, 5], neighbours=1, temperature=0.05)
    probs = np.tile(UNIFORM, (2, 1)).astype(np.float32)
    queries = np.eye(2, 8)
    memory.weight = 0.0
    assert memory.mix(probs, queries) is probs
    memory.weight = 0.25
    expected = 0.75 * probs + 0.25 * np.eye(7)[[4, 5]]
    np.testing.assert_allclose(memory.mix(probs, queries), expected, atol=1e-6)


def test_a_two_turn_key_matches_on_both_turns():
    current = np.array([[3.0, 0], [0, 2.0], [1.0, 0]])
    previous = np.array([[0, 5.0], [0, 0], [1.0, 1.0]])  # row 1 starts its dialogue
    keys = memory_keys(current, previous)
    # Each part is L2-normalised; a missing previous utterance stays zero.
    np.testing.assert_allclose(keys, [[1, 0, 0, 1], [0, 1, 0, 0], [1, 0, 2**-0.5, 2**-0.5]], atol=1e-6)
    assert memory_keys(current, None) is current
    # Once normalised as memory rows, the cosine of two keys is the mean of the two turns' cosines.
    memory = KnnMemory(torch.tensor(keys), torch.tensor([0, 1, 2]), UNIFORM, key_turns=2)
    similarities, indices = memory.nearest(keys[:1], 3)
    assert indices[0].tolist() == [0, 2, 1]
    assert similarities[0].tolist() == pytest.approx([1.0, (1 + 2**-0.5) / 2, 0.0], abs=1e-3)


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
    helpful = KnnMemory(memory_rows, torch.tensor(memory_labels), UNIFORM)
    _, (_, score) = fit_memory(helpful, guessing, queries, fit_by_accuracy(labels))
    assert helpful.weight > 0 and score > 0.95
    # A perfect classifier and a memory whose labels are shuffled: the classifier alone wins.
    perfect = np.eye(7)[labels] * 0.9 + 0.1 / 7
    useless = KnnMemory(memory_rows, torch.tensor(rng.permutation(memory_labels)), UNIFORM)
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
    assert classifier.memory.embeddings.shape[1] == key_turns * classifier.model.config.hidden_size
    test = prepare_splits(data, ["test"]).splits["test"]
    turns, previous = test["turns"].tolist(), test["previous_text"].tolist()
    probs = predict_proba(classifier, turns, previous=previous)
    alone, embeddings = model_outputs(classifier, turns, embed=True)
    queries = memory_queries(classifier, key_turns, turns, previous, embeddings)
    np.testing.assert_allclose(probs, classifier.memory.mix(alone, queries), atol=1e-6)
    assert not np.allclose(probs, alone, atol=1e-3)
    if key_turns == 2:
        # The previous utterance's part is its embedding alone, reused from the rows that score it.
        later = next(i for i, text in enumerate(previous) if text)
        alone_previous = model_outputs(classifier, [[previous[later]]], embed=True)[1][0]
        expected = alone_previous / np.linalg.norm(alone_previous)
        np.testing.assert_allclose(queries[later, embeddings.shape[1] :], expected, atol=1e-4)
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
    # A two-turn key embeds the previous utterance alone: a second forward pass on the first forecast.
    assert len(passes) == key_turns
    passes.clear()
    forecast = predictor.predict([first, second, third])
    # The previous utterance was the last one of the forecast before: it is not embedded again.
    assert len(passes) == 1
    fresh = EmotionPredictor.from_pretrained(out, device="cpu").predict([first, second, third])
    assert list(forecast.probabilities.values()) == pytest.approx(list(fresh.probabilities.values()), abs=1e-5)


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
    # Keys of the wrong width for the turns the metadata names: one line, not a shape error at forecast time.
    shutil.copy(os.path.join(out, "model", MEMORY_FILE), folder)
    metadata_path = os.path.join(folder, "emotion_predictor.json")
    with open(metadata_path, encoding="utf-8") as handle:
        metadata = json.load(handle)
    metadata["knn_memory"]["key_turns"] = 3 - metadata["knn_memory"]["key_turns"]
    with open(metadata_path, "w", encoding="utf-8") as handle:
        json.dump(metadata, handle)
    with pytest.raises(UserError, match="knn memory keys have .* values, the model's"):
        load_classifier(folder, device="cpu")


def test_saved_memory_round_trips_and_checks_its_size(tmp_path):
    memory = axis_memory([0, 1, 2], neighbours=2, temperature=0.1, weight=0.5)
    save_memory(str(tmp_path), memory)
    settings = memory.settings("trained_rows")
    metadata = {"train_prior": UNIFORM.tolist(), "knn_memory": settings}
    loaded = load_memory(str(tmp_path), metadata)
    assert loaded.labels.tolist() == [0, 1, 2] and loaded.settings("trained_rows") == settings
    assert torch.equal(loaded.embeddings, memory.embeddings)
    assert load_memory(str(tmp_path), {**metadata, "knn_memory": {**settings, "weight": 0.0}}) is None
    assert load_memory(str(tmp_path), {"train_prior": UNIFORM.tolist()}) is None
    # Models saved before knn_memory_turns existed key on one turn.
    older = {k: v for k, v in settings.items() if k != "key_turns"}
    assert load_memory(str(tmp_path), {**metadata, "knn_memory": older}).key_turns == 1
    with pytest.raises(UserError, match="holds 3 rows, emotion_predictor.json says 4"):
        load_memory(str(tmp_path), {**metadata, "knn_memory": {**settings, "size": 4}})
