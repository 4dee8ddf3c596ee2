"""The conversation's emotional trajectory: a recogniser of each turn's own emotion (trained first
by the run), a memory keyed on the last turns' emotions, given emotions in every entry point, the
tfidf_history baseline, and no gold emotion of an evaluated split read in recognised mode."""

from __future__ import annotations

import json
import os
import random
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import EMOTION_WORDS, WORDS, tiny_config, write_jsonl
from emotion_predictor.data.utils import prepare_splits
from emotion_predictor.errors import UserError
from emotion_predictor.evaluation.evaluate import run_evaluation
from emotion_predictor.labels import EMOTIONS
from emotion_predictor.modeling.knn_memory import MEMORY_FILE
from emotion_predictor.prediction.forecast import Trajectory, predict_proba
from emotion_predictor.prediction.inference import load_classifier
from emotion_predictor.prediction.predict_io import predict_jsonl
from emotion_predictor.prediction.predictor import EmotionPredictor
from emotion_predictor.training.recipe import run_fine_tuning

TURNS = 2


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def persistent_dialogues(count: int, seed: int) -> list[dict]:
    """Each speaker keeps one emotion and names it: the next turn's emotion is the previous turn's."""
    rng = random.Random(seed)
    dialogues = []
    for dialog_id in range(count):
        moods = (rng.choice([0, 1, 3, 4, 5, 6]), rng.choice([0, 1, 3, 4, 5, 6]))
        emotions = [moods[turn % 2] for turn in range(rng.randint(3, 7))]
        utterances = [" ".join(rng.sample(WORDS, 4) + ([EMOTION_WORDS[e]] if e else [])) for e in emotions]
        dialogues.append({"dialog_id": dialog_id, "utterances": utterances, "emotions": emotions})
    return dialogues


@pytest.fixture(scope="module")
def trajectory_data(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("persistent_dialogues")
    for split, count, seed in (("train", 150, 1), ("validation", 40, 2), ("test", 40, 3)):
        write_jsonl(str(folder / f"{split}.jsonl"), persistent_dialogues(count, seed))
    return str(folder)


@pytest.fixture(scope="module")
def trajectory_run(tmp_path_factory, tiny_model_dir, trajectory_data) -> tuple[str, dict]:
    """A run that trains its recogniser first, then keys a two-turn memory on two turns' emotions."""
    out = str(tmp_path_factory.mktemp("trajectory_run"))
    result = run_fine_tuning(
        *tiny_config(
            tiny_model_dir,
            trajectory_data,
            out,
            use_lora=False,
            max_steps=4,
            knn_memory="train_split",
            knn_memory_turns=2,
            trajectory_turns=TURNS,
            emotion_recogniser="train",
            decision_rule="prior_corrected",
        )
    )
    return out, result.metrics


@pytest.fixture(scope="module")
def weighted_model(trajectory_run, tmp_path_factory) -> str:
    """The run's model with its memory's weights set to 1, so that the trajectory counts whatever
    the tiny run's fit chose."""
    folder = str(tmp_path_factory.mktemp("weighted") / "model")
    shutil.copytree(os.path.join(trajectory_run[0], "model"), folder)
    path = os.path.join(folder, "emotion_predictor.json")
    with open(path, encoding="utf-8") as handle:
        metadata = json.load(handle)
    metadata["knn_memory"].update(weight=1.0, emotion_weight=1.0, given_emotion_weight=1.0)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(metadata, handle)
    return folder


def test_a_run_trains_its_recogniser_first_and_keys_the_memory_on_gold_emotions(trajectory_run, trajectory_data):
    out, metrics = trajectory_run
    with open(os.path.join(out, "recogniser", "metrics.json"), encoding="utf-8") as handle:
        recognised = json.load(handle)
    assert {"validation", "test"} <= set(recognised)  # the recogniser's own scores, on each utterance's emotion
    with open(os.path.join(out, "recogniser", "run_config.json"), encoding="utf-8") as handle:
        assert json.load(handle)["task"] == "recognise"
    # It trained and was scored on every utterance, labelled with its own emotion (not the next one's).
    with open(os.path.join(out, "recogniser", "data_stats.json"), encoding="utf-8") as handle:
        stats = json.load(handle)["splits"]
    for split in ("train", "test"):
        dialogues = read_jsonl(os.path.join(trajectory_data, f"{split}.jsonl"))
        own = np.bincount([e for d in dialogues for e in d["emotions"]], minlength=len(EMOTIONS))
        assert stats[split]["rows"] == own.sum()
        assert [stats[split]["counts"][name] for name in EMOTIONS] == own.tolist()
    assert os.path.isfile(os.path.join(out, "model", "recogniser", "config.json"))
    settings = metrics["knn_memory"]
    assert settings["trajectory_turns"] == TURNS and settings["key_turns"] == 2
    from safetensors.torch import load_file

    stored = load_file(os.path.join(out, "model", MEMORY_FILE))
    train = prepare_splits(trajectory_data, ["train"]).splits["train"]
    # Memory rows carry their gold emotions: the current turn's, then the one before (-1 at a start).
    expected = [[c, h[-1] if h else -1] for c, h in zip(train["current_label"], train["history_labels"])]
    assert stored["emotions"].tolist() == expected
    classifier = load_classifier(out, device="cpu")
    assert classifier.recogniser is not None and classifier.memory.trajectory_turns == TURNS


def shuffled_emotions(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The rows with the gold emotions of their history turns moved between rows."""
    rng = np.random.default_rng(seed)
    shuffled = frame.copy()
    shuffled["current_label"] = rng.permutation(frame["current_label"].to_numpy())
    shuffled["history_labels"] = [frame["history_labels"].iloc[i] for i in rng.permutation(len(frame))]
    return shuffled


def test_recognised_forecasts_read_no_gold_emotion_and_given_ones_do(weighted_model, trajectory_data):
    classifier = load_classifier(weighted_model, device="cpu")
    rows = prepare_splits(trajectory_data, ["test"]).splits["test"]
    shuffled = shuffled_emotions(rows)

    def forecast(frame: pd.DataFrame, given: bool) -> np.ndarray:
        trajectory = Trajectory.of_rows(frame, given=given)
        return predict_proba(
            classifier, frame["turns"].tolist(), previous=frame["previous_text"].tolist(), trajectory=trajectory
        )

    np.testing.assert_array_equal(forecast(rows, False), forecast(shuffled, False))
    assert not np.allclose(forecast(rows, True), forecast(shuffled, True), atol=1e-4)


def evaluate(model: str, dataset: str, out: str) -> list:
    from emotion_predictor.arguments import EvaluateArguments

    args = EvaluateArguments(
        models=[model],
        dataset=dataset,
        output_dir=out,
        disable_tqdm=True,
        baseline_cache_dir=None,
        baselines=["tfidf", "tfidf_history"],
    )
    return run_evaluation(args)


def test_evaluation_reports_given_emotions_and_tfidf_history_and_shuffled_gold_moves_only_given_rows(
    weighted_model, trajectory_data, tmp_path
):
    results = evaluate(weighted_model, trajectory_data, str(tmp_path / "real"))
    names = [r.name for r in results]
    assert names == [
        names[0],
        f"{names[0]} (given emotions)",
        "baseline: tfidf",
        "baseline: tfidf_history",
        "baseline: tfidf_history (given emotions)",
    ]
    assert results[0].record["emotions"] == "recognised" and results[1].record["emotions"] == "given"
    # Each mode is measured against the baselines of its own mode.
    assert results[0].record["versus_best_baseline"]["Macro_F1"]["baseline"] in names[2:4]
    assert results[1].record["versus_best_baseline"]["Macro_F1"]["baseline"] == names[4]
    with open(tmp_path / "real" / "comparison.md", encoding="utf-8") as handle:
        assert "model (given emotions)" in handle.read()
    # The same split with every dialogue's emotions shuffled: recognised forecasts stay, given ones move.
    shuffled = tmp_path / "shuffled"
    shutil.copytree(trajectory_data, shuffled)
    rng = random.Random(0)
    dialogues = read_jsonl(shuffled / "test.jsonl")
    for dialogue in dialogues:
        dialogue["emotions"] = [rng.choice(range(7)) for _ in dialogue["emotions"]]
    write_jsonl(str(shuffled / "test.jsonl"), dialogues)
    evaluate(weighted_model, str(shuffled), str(tmp_path / "again"))
    columns = [f"prob_{name}" for name in EMOTIONS]

    def probabilities(run: str, folder: str = "") -> np.ndarray:
        return pd.read_csv(tmp_path / run / folder / "predictions.csv")[columns].to_numpy()

    np.testing.assert_array_equal(probabilities("real"), probabilities("again"))
    assert not np.allclose(probabilities("real", "given_emotions"), probabilities("again", "given_emotions"), atol=1e-4)


def test_the_predictor_takes_given_emotions_and_names_bad_ones(weighted_model, trajectory_data, tmp_path):
    predictor = EmotionPredictor.from_pretrained(weighted_model, device="cpu")
    assert predictor.trajectory_turns == TURNS
    history = ["hello how are you angry", "fine thanks happy", "what now angry"]
    recognised = predictor.predict(history)
    given = predictor.predict(history, emotions=[None, "sadness", "joy"])  # joy is read as happiness
    assert given.probabilities != recognised.probabilities
    same = predictor.predict_batch([history, history], emotions=[None, [None, "sadness", "happiness"]])
    assert same[0].probabilities == pytest.approx(recognised.probabilities, abs=1e-5)
    assert same[1].probabilities == pytest.approx(given.probabilities, abs=1e-5)
    with pytest.raises(UserError, match=r"emotions\[1\] is \"hungry\": not an emotion; use one of neutral"):
        predictor.predict(history, emotions=[None, "hungry", None])
    with pytest.raises(UserError, match="emotions has 2 entries for 3 history turns"):
        predictor.predict(history, emotions=[None, None])
    lines = tmp_path / "histories.jsonl"
    lines.write_text(
        json.dumps({"id": "a", "history": history, "emotions": [None, "sadness", "joy"]})
        + "\n"
        + json.dumps({"id": "b", "history": history, "emotions": ["calm"]})
        + "\n"
    )
    errors = tmp_path / "errors.txt"
    with open(errors, "w", encoding="utf-8") as sink:
        written, failed = predict_jsonl(predictor, str(lines), str(tmp_path / "out.jsonl"), sink)
    assert (written, failed) == (1, 1)
    [forecast] = read_jsonl(tmp_path / "out.jsonl")
    assert forecast["probabilities"] == pytest.approx(given.probabilities, abs=1e-6)
    assert "histories.jsonl:2: emotions has 1 entries for 3 history turns" in errors.read_text()


def test_a_conversation_recognises_each_utterance_once(weighted_model):
    predictor = EmotionPredictor.from_pretrained(weighted_model, device="cpu")
    recognised: list[int] = []
    predictor.classifier.recogniser.model.register_forward_hook(lambda _m, inputs, _o: recognised.append(1))
    predictor.predict(["hi angry", "so sad"])
    assert len(recognised) == 1  # both turns in one pass
    recognised.clear()
    predictor.predict(["hi angry", "so sad", "wow really"])
    assert len(recognised) == 1  # only the new turn; with its emotion given, none
    recognised.clear()
    predictor.predict(["hi angry", "so sad", "wow really", "a new one"], emotions=[None, None, None, "fear"])
    assert recognised == []


def test_a_memory_that_gives_recognised_emotions_no_weight_runs_no_recogniser(weighted_model, tmp_path):
    folder = str(tmp_path / "model")
    shutil.copytree(weighted_model, folder)
    path = os.path.join(folder, "emotion_predictor.json")
    with open(path, encoding="utf-8") as handle:
        metadata = json.load(handle)
    metadata["knn_memory"]["emotion_weight"] = 0.0  # recognised: the text alone; given: weight 1
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(metadata, handle)
    predictor = EmotionPredictor.from_pretrained(folder, device="cpu")
    recognised: list[int] = []
    predictor.classifier.recogniser.model.register_forward_hook(lambda _m, inputs, _o: recognised.append(1))
    history = ["hi angry", "so sad", "wow really"]
    text_alone = predictor.predict(history)
    assert recognised == []
    given = predictor.predict(history, emotions=[None, "sadness", "surprise"])
    assert recognised == [] and given.probabilities != text_alone.probabilities


def test_a_model_without_recogniser_needs_given_emotions(weighted_model, tmp_path):
    folder = str(tmp_path / "model")
    shutil.copytree(weighted_model, folder)
    shutil.rmtree(os.path.join(folder, "recogniser"))
    with pytest.raises(UserError, match="names an emotion recogniser but recogniser/ is missing"):
        load_classifier(folder, device="cpu")
    classifier = load_classifier(weighted_model, device="cpu")
    classifier.recogniser = None
    predictor = EmotionPredictor(classifier)
    with pytest.raises(UserError, match="has no emotion recogniser: give the emotions of the last turns"):
        predictor.predict(["hello", "angry again"])
    assert predictor.predict(["hello", "angry again"], emotions=["neutral", "anger"]).label in EMOTIONS


def test_settings_that_cannot_read_a_trajectory_are_refused(tiny_model_dir, trajectory_data, tmp_path):
    with pytest.raises(UserError, match="trajectory_turns is 2: .*set knn_memory .*and emotion_recogniser"):
        tiny_config(tiny_model_dir, trajectory_data, str(tmp_path / "a"), trajectory_turns=2, knn_memory="train_split")
    with pytest.raises(UserError, match="task is recognise .*drop emotion_recogniser"):
        run_fine_tuning(
            *tiny_config(tiny_model_dir, trajectory_data, str(tmp_path / "b"), task="recognise", emotion_recogniser="x")
        )
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    for split in ("train", "validation", "test"):
        write_jsonl(
            str(shifted / f"{split}.jsonl"), [{"text": "hello there", "label": 1}, {"text": "so sad", "label": 5}]
        )
    with pytest.raises(UserError, match="cannot train a recogniser"):
        prepare_splits(str(shifted), task="recognise")


def test_recognise_task_labels_every_utterance_with_its_own_emotion(trajectory_data):
    forecast = prepare_splits(trajectory_data, ["test"]).splits["test"]
    recognise = prepare_splits(trajectory_data, ["test"], task="recognise").splits["test"]
    dialogues = read_jsonl(os.path.join(trajectory_data, "test.jsonl"))
    assert len(recognise) == sum(len(d["utterances"]) for d in dialogues)
    assert len(forecast) == len(recognise) - len(dialogues)
    assert recognise["label"].tolist() == [e for d in dialogues for e in d["emotions"]]
    assert torch.equal(torch.tensor(recognise["label"].to_numpy()), torch.tensor(recognise["current_label"].to_numpy()))


def test_recogniser_headroom_refits_the_memory_for_each_recogniser(
    trajectory_run, trajectory_data, tmp_path, capsys, monkeypatch
):
    from bench import recogniser_headroom

    argv = ["--dataset", trajectory_data, "--results_dir", str(tmp_path), "--name", "t"]
    monkeypatch.setattr("sys.argv", ["recogniser_headroom", "--model", trajectory_run[0], *argv])
    recogniser_headroom.main()
    first = capsys.readouterr().out
    recogniser_headroom.main()  # every recogniser finished: skipped, the same table
    second = capsys.readouterr().out
    rows = {
        line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in first.splitlines() if line.startswith("| ")
    }
    assert list(rows)[1:] == list(recogniser_headroom.RECOGNISERS)
    own_accuracy = [float(rows[name][0].split(" / ")[0]) for name in ("model", *list(rows)[-4:])]
    # gold replaces the recogniser on nested sets of utterances as the fraction grows, up to all
    assert own_accuracy == sorted(own_accuracy) and own_accuracy[-1] == 1.0 and own_accuracy[0] < 1.0
    assert second.count("done, skipped") == len(recogniser_headroom.RECOGNISERS)
    assert second.split("# Recogniser headroom")[1] == first.split("# Recogniser headroom")[1]
    assert (tmp_path / "recogniser_headroom-t.md").read_text() in second
    monkeypatch.setattr(
        "sys.argv", ["recogniser_headroom", "--model", os.path.join(trajectory_run[0], "recogniser"), *argv[:-1], "r"]
    )
    with pytest.raises(UserError, match="needs a recogniser and a memory keyed on a trajectory"):
        recogniser_headroom.main()


def test_recogniser_calibration_recovers_the_prior_a_balanced_recogniser_divided_out():
    from bench.recogniser_headroom import SplitInputs, calibrated, fit_calibration

    prior = np.array([0.6, 0.05, 0.05, 0.05, 0.15, 0.05, 0.05])
    gold = np.repeat(np.arange(7), (prior * 100).round().astype(int))  # labels in the prior's proportions
    flat = np.full((1, 7), 1 / 7)  # an uninformative recogniser in the balanced frame: prior divided out
    inputs = SplitInputs(gold, None, None, ["u"], np.zeros((len(gold), 1), dtype=np.int64), gold[:, None], None)
    assert fit_calibration(inputs, flat, prior) == 1.0
    np.testing.assert_allclose(calibrated(flat, prior, 1.0)[0], prior)
    assert fit_calibration(inputs, prior[None, :], prior) == 0.0  # already in the prior's frame
