"""Recogniser headroom (issue 24): how far does a better emotion recogniser lift the forecast, and
how good must it be for issue 24's goals? A trained model's memory reads the recognised emotions
of each row's last turns; here they come from other recognisers, real or simulated, and for each
one the memory and the decision rule are fitted again on validation as a fine-tuning run fits
them (`fit_memory`, the validation rows' emotions recognised), then test is scored.

    uv run python -m bench.recogniser_headroom --model RUN [--name NAME] [--results_dir DIR] [--only RECOGNISER ...]

RUN is a fine-tuning output_dir or model folder with a recogniser and a memory keyed on a
trajectory (`emotion_recogniser`, `trajectory_turns`). The recognisers:

- `model`: the model's own recogniser, the product's recognised mode.
- `model, prior-calibrated`: its distributions moved towards the train split's emotion prior,
  p * prior^t renormalised, t fitted on validation's log loss. The recogniser is trained with
  balanced class weights on a quarter of the neutral rows, so its distributions overstate the
  rare emotions, while the memory's rows carry gold emotions at their natural frequencies.
- `tfidf, prior-calibrated`: the TF-IDF + LR recogniser of the `tfidf_history` baseline, fitted
  on every train row's current utterance and emotion, calibrated the same way.
- `model + tfidf, prior-calibrated`: the geometric mean of the two, calibrated.
- `gold on a fraction f`: a simulated recogniser, the gold emotion (one-hot) on a random fraction
  f of the distinct utterances and the model's recogniser on the rest; f 1 is a perfect one.

Each recogniser is scored on each split's current utterances (its own task; argmax) beside the
forecast it leads to. Every finished recogniser is a file under
DIR/recogniser_headroom-NAME/ (DIR: bench/results), skipped on a re-run; the table goes to
DIR/recogniser_headroom-NAME.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import os
from typing import Any

from emotion_predictor.logs import setup_logging

setup_logging(logging.WARNING)  # before the libraries load: their import-time noise is filtered

import numpy as np  # noqa: E402

from bench.resumable import finished_rows, run_rows  # noqa: E402
from bench.scoring import COLUMNS  # noqa: E402
from emotion_predictor.data.train_split import TrainSplit  # noqa: E402
from emotion_predictor.data.utils import prepare_splits  # noqa: E402
from emotion_predictor.errors import UserError, run_main  # noqa: E402
from emotion_predictor.evaluation.baselines import text_classifier  # noqa: E402
from emotion_predictor.evaluation.metrics import headline_metrics  # noqa: E402
from emotion_predictor.labels import NUM_LABELS  # noqa: E402
from emotion_predictor.modeling.knn_memory import fit_memory  # noqa: E402
from emotion_predictor.output_files import write_json  # noqa: E402
from emotion_predictor.prediction.decision import decide, fit_tau  # noqa: E402
from emotion_predictor.prediction.forecast import Trajectory, classifier_and_queries  # noqa: E402
from emotion_predictor.prediction.inference import Classifier, load_classifier, model_outputs  # noqa: E402
from emotion_predictor.tables import markdown_table  # noqa: E402
from emotion_predictor.training.validation_fit import gold_trajectories  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLD_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
CALIBRATION_EXPONENTS = np.round(np.arange(0.0, 2.01, 0.1), 2)
RECOGNISERS = (
    "model",
    "model, prior-calibrated",
    "tfidf, prior-calibrated",
    "model + tfidf, prior-calibrated",
    *(f"gold on a fraction {f}" for f in GOLD_FRACTIONS),
)
SPLITS = ("validation", "test")
FLOOR = 1e-6  # probabilities floored before a log


@dataclasses.dataclass
class SplitInputs:
    """One split's rows as the memory reads them: the classifier's probabilities, the memory
    queries (text part), the distinct utterances of the rows' last turns and, per row and turn,
    the index of its utterance (-1 where the dialogue has none) and its gold emotion (-1 none)."""

    labels: np.ndarray
    probs: np.ndarray
    queries: Any
    utterances: list[str]
    turn_index: np.ndarray
    turn_gold: np.ndarray
    unseen: np.ndarray


def split_inputs(classifier: Classifier, rows: Any, seen: np.ndarray) -> SplitInputs:
    memory = classifier.memory
    turns = memory.trajectory_turns
    texts = [row[:turns] + [""] * (turns - len(row[:turns])) for row in Trajectory.of_rows(rows).texts]
    utterances = sorted({text for row in texts for text in row if text})
    position = {text: i for i, text in enumerate(utterances)}
    # the text part of the queries only: every recogniser below fills in the emotions
    probs, queries = classifier_and_queries(
        classifier, memory.key_turns, 0, rows["turns"].tolist(), rows["previous_text"].tolist(), batch_size=128
    )
    return SplitInputs(
        rows["label"].to_numpy(),
        probs,
        queries,
        utterances,
        np.array([[position.get(text, -1) for text in row] for row in texts]),
        gold_trajectories(rows, turns),
        ~seen,
    )


def distributions(inputs: SplitInputs, per_utterance: np.ndarray) -> np.ndarray:
    """(rows, turns, 7) from one distribution per distinct utterance; zeros where no turn."""
    result = per_utterance[np.maximum(inputs.turn_index, 0)].astype(np.float32)
    result[inputs.turn_index < 0] = 0.0
    return result


def calibrated(probs: np.ndarray, prior: np.ndarray, exponent: float) -> np.ndarray:
    moved = probs * prior[None, :] ** exponent
    return moved / moved.sum(axis=1, keepdims=True)


def current_turns(inputs: SplitInputs, per_utterance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's current utterance's distribution and gold emotion, rows with a gold emotion."""
    keep = inputs.turn_gold[:, 0] >= 0
    return per_utterance[inputs.turn_index[keep, 0]], inputs.turn_gold[keep, 0]


def fit_calibration(validation: SplitInputs, per_utterance: np.ndarray, prior: np.ndarray) -> float:
    """The prior exponent with the lowest log loss on validation's current utterances."""
    probs, gold = current_turns(validation, per_utterance)

    def log_loss(exponent: float) -> float:
        moved = calibrated(probs, prior, exponent)
        return float(-np.log(np.maximum(moved[np.arange(len(gold)), gold], FLOOR)).mean())

    return float(min(CALIBRATION_EXPONENTS, key=log_loss))


def gold_on_fraction(inputs: SplitInputs, per_utterance: np.ndarray, fraction: float) -> np.ndarray:
    """(rows, turns, 7): the gold emotion on the utterances a stable hash puts below `fraction`."""
    result = distributions(inputs, per_utterance)
    draws = np.array([int(hashlib.md5(t.encode()).hexdigest()[:8], 16) / 16**8 for t in inputs.utterances])
    chosen = (inputs.turn_index >= 0) & (inputs.turn_gold >= 0) & (draws[np.maximum(inputs.turn_index, 0)] < fraction)
    result[chosen] = np.eye(NUM_LABELS, dtype=np.float32)[inputs.turn_gold[chosen]]
    return result


class Recognisers:
    """Each recogniser's distributions of each split's utterances, computed once."""

    def __init__(self, classifier: Classifier, inputs: dict[str, SplitInputs], dataset: str) -> None:
        self.classifier, self.inputs = classifier, inputs
        self.cache: dict[str, dict[str, np.ndarray]] = {}
        self.train = prepare_splits(dataset, ["train"], neutral_keep_ratio=1.0).splits["train"]
        counts = np.bincount(self.train["current_label"].to_numpy(), minlength=NUM_LABELS).astype(np.float64)
        self.prior = counts / counts.sum()

    def base(self, name: str) -> dict[str, np.ndarray]:
        if name not in self.cache:
            if name == "model":
                self.cache[name] = {
                    split: model_outputs(self.classifier.recogniser, [[t] for t in x.utterances], 128)[0]
                    for split, x in self.inputs.items()
                }
            elif name == "tfidf":
                recognise = text_classifier(self.train["text"].tolist(), self.train["current_label"].to_numpy())
                self.cache[name] = {split: recognise(x.utterances) for split, x in self.inputs.items()}
            else:  # "model + tfidf": the geometric mean
                model, tfidf = self.base("model"), self.base("tfidf")
                self.cache[name] = {
                    split: normalised_geometric_mean(model[split], tfidf[split]) for split in self.inputs
                }
        return self.cache[name]

    def per_utterance(self, name: str) -> tuple[dict[str, np.ndarray], str]:
        """The distributions of recogniser `name` per split and distinct utterance, and a note."""
        if name.startswith("gold on") or name == "model":
            return self.base("model"), ""
        base = self.base(name.removesuffix(", prior-calibrated"))
        exponent = fit_calibration(self.inputs["validation"], base["validation"], self.prior)
        return {split: calibrated(p, self.prior, exponent) for split, p in base.items()}, f"prior exponent {exponent}"

    def trajectories(self, name: str) -> tuple[dict[str, np.ndarray], str]:
        """(rows, turns, 7) per split from recogniser `name`, and its note."""
        per_utterance, note = self.per_utterance(name)
        result = {}
        for split, x in self.inputs.items():
            if name.startswith("gold on"):
                result[split] = gold_on_fraction(x, per_utterance[split], float(name.rsplit(" ", 1)[1]))
            else:
                result[split] = distributions(x, per_utterance[split])
        return result, note


def normalised_geometric_mean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mean = np.sqrt(np.maximum(a, FLOOR) * np.maximum(b, FLOOR))
    return mean / mean.sum(axis=1, keepdims=True)


def own_task_scores(inputs: SplitInputs, trajectories: np.ndarray) -> dict[str, float]:
    """The recogniser's argmax on the split's current utterances (gold where it was replaced)."""
    keep = inputs.turn_gold[:, 0] >= 0
    return headline_metrics(inputs.turn_gold[keep, 0], trajectories[keep, 0].argmax(-1))


def run_recogniser(name: str, classifier: Classifier, recognisers: Recognisers, path: str) -> None:
    inputs, memory = recognisers.inputs, classifier.memory
    prior, metric = classifier.metadata["train_prior"], classifier.metadata.get("decision_metric", "Macro_F1")
    trajectories, note = recognisers.trajectories(name)
    queries = {}
    for split, x in inputs.items():
        queries[split] = dataclasses.replace(x.queries)
        queries[split].emotions, queries[split].given = trajectories[split], np.zeros(len(x.labels), dtype=bool)

    def fit(probs: np.ndarray) -> tuple[dict[str, Any], tuple[bool, float]]:
        tau, score, met = fit_tau(probs, inputs["validation"].labels, prior, metric)
        return {"tau": tau}, (met, score)

    decision, _ = fit_memory(memory, inputs["validation"].probs, queries["validation"], fit)
    result: dict[str, Any] = {"note": note, "memory": memory.settings("train_split"), "tau": decision["tau"]}
    for split, x in inputs.items():
        predicted = decide(memory.mix(x.probs, queries[split]), "prior_corrected", decision["tau"], prior)
        result[split] = {
            "recogniser": own_task_scores(x, trajectories[split]),
            "forecast": headline_metrics(x.labels, predicted),
            "forecast_unseen": headline_metrics(x.labels[x.unseen], predicted[x.unseen]),
        }
    write_json(path, result)
    print(f"{name}: test forecast {format_scores(result['test']['forecast'])}", flush=True)


def format_scores(values: dict[str, float]) -> str:
    return " / ".join(f"{values[c]:.3f}" for c in COLUMNS)


def report(name: str, results: dict[str, Any]) -> str:
    header = [
        "recogniser",
        "its own task, test (acc / BA / wF1 / MF1)",
        "forecast, validation",
        "forecast, test",
        "forecast, test unseen rows",
        "fitted",
    ]
    cells = [
        [
            recogniser,
            format_scores(r["test"]["recogniser"]),
            format_scores(r["validation"]["forecast"]),
            format_scores(r["test"]["forecast"]),
            format_scores(r["test"]["forecast_unseen"]),
            "; ".join(
                filter(
                    None,
                    [
                        r["note"],
                        f"memory weight {r['memory']['weight']}, emotion weight {r['memory']['emotion_weight']}",
                        f"tau {r['tau']}",
                    ],
                )
            ),
        ]
        for recogniser, r in results.items()
    ]
    return (
        f"# Recogniser headroom: {name}\n\nGenerated by `uv run python -m bench.recogniser_headroom`. "
        "Each row: accuracy / balanced accuracy / weighted F1 / macro F1; the memory and tau fitted on "
        "validation with that recogniser's emotions.\n\n" + markdown_table(header, cells)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="fine-tuning output_dir or model folder")
    parser.add_argument("--name", default=None, help="results name (default: the folder's name)")
    parser.add_argument("--dataset", default=os.path.join(ROOT, "..", "shared", "data", "dailydialog"))
    parser.add_argument("--results_dir", default=os.path.join(ROOT, "bench", "results"))
    parser.add_argument("--only", nargs="+", choices=RECOGNISERS, help="run these recognisers (default: all)")
    args = parser.parse_args()
    names = args.only or RECOGNISERS
    name = args.name or os.path.basename(os.path.normpath(args.model))
    folder = os.path.join(args.results_dir, f"recogniser_headroom-{name}")

    def result_path(recogniser: str) -> str:
        return os.path.join(folder, recogniser.replace(" ", "_").replace(",", "").replace("+", "and") + ".json")

    context: dict[str, Any] = {}

    def run(recogniser: str) -> None:
        if not context:  # loaded on the first row to run: a finished study needs no model
            classifier = load_classifier(args.model, device="cpu", knn_search="exact")
            if classifier.recogniser is None or classifier.memory is None or not classifier.memory.trajectory_turns:
                raise UserError(
                    f"{args.model}: needs a recogniser and a memory keyed on a trajectory; fine-tune with "
                    "emotion_recogniser and trajectory_turns"
                )
            splits = prepare_splits(args.dataset, list(SPLITS)).splits
            train_split = TrainSplit(args.dataset)
            inputs = {s: split_inputs(classifier, splits[s], train_split.seen(splits[s]["text"])) for s in SPLITS}
            context.update(classifier=classifier, recognisers=Recognisers(classifier, inputs, args.dataset))
        run_recogniser(recogniser, context["classifier"], context["recognisers"], result_path(recogniser))

    os.makedirs(folder, exist_ok=True)
    run_rows(
        names,
        result_path,
        run,
        lambda: report(name, finished_rows(RECOGNISERS, result_path)),
        folder + ".md",
    )


if __name__ == "__main__":
    run_main(main)
