"""Stacking screen (issue 24): can a logistic-regression forecast head, fitted on validation over
a trained model's memory-mixed probabilities and the recognised emotions of the last turns, beat
the model's own forecast? Validation picks (5-fold out-of-fold by dialogue); test is scored once,
for the pick and for the model as it is.

    uv run python -m bench.stacking_screen --model RUN [--name NAME]

RUN is a fine-tuning output_dir or model folder whose memory reads a trajectory
(`trajectory_turns` > 0). Validation rows are the only rows whose recognitions are as noisy as
at inference and whose labels the model never trained on, hence this head is fitted on them; its
rarest classes have a few dozen validation rows, which is what the screen tests. The figures go
to bench/results/stacking_screen-NAME.txt.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from typing import Any

from emotion_predictor.logs import setup_logging

setup_logging(logging.WARNING)  # before the libraries load: their import-time noise is filtered

import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GroupKFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from bench.scoring import COLUMNS  # noqa: E402
from emotion_predictor.data.train_split import TrainSplit  # noqa: E402
from emotion_predictor.data.utils import prepare_splits  # noqa: E402
from emotion_predictor.errors import UserError, run_main  # noqa: E402
from emotion_predictor.evaluation.metrics import headline_metrics  # noqa: E402
from emotion_predictor.labels import NUM_LABELS  # noqa: E402
from emotion_predictor.output_files import write_text  # noqa: E402
from emotion_predictor.prediction.decision import decide, fit_tau  # noqa: E402
from emotion_predictor.prediction.forecast import Trajectory, classifier_and_queries, emotion_distributions  # noqa: E402
from emotion_predictor.prediction.inference import load_classifier  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEATURES = ("mix", "mix+emotions", "mix+classifier+emotions", "mix+emotions+pairs")
LOG_FLOOR = 1e-4  # the log of a probability, floored: standardised features, no -inf


def split_outputs(classifier: Any, rows: Any) -> dict[str, np.ndarray]:
    """The classifier's probabilities, the memory's mix and the trajectory's emotions of `rows`,
    recognised and given (gold), the mix recomputed with the given ones."""
    memory = classifier.memory
    args = (memory.key_turns, memory.trajectory_turns, rows["turns"].tolist(), rows["previous_text"].tolist())
    probs, queries = classifier_and_queries(classifier, *args, Trajectory.of_rows(rows), 128)
    given = dataclasses.replace(queries)
    given.emotions, given.given = emotion_distributions(
        classifier, Trajectory.of_rows(rows, given=True), memory.trajectory_turns, len(rows), 128
    )
    return {
        "classifier": probs,
        "mix": memory.mix(probs, queries),
        "emotions": queries.emotions.reshape(len(rows), -1),
        "mix_given": memory.mix(probs, given),
        "emotions_given": given.emotions.reshape(len(rows), -1),
    }


def features(outputs: dict[str, np.ndarray], kind: str, given: bool = False) -> np.ndarray:
    mix = np.log(np.maximum(outputs["mix_given" if given else "mix"], LOG_FLOOR))
    emotions = outputs["emotions_given" if given else "emotions"]
    parts = [mix]
    if kind == "mix+classifier+emotions":
        parts.append(np.log(np.maximum(outputs["classifier"], LOG_FLOOR)))
    if kind != "mix":
        parts.append(emotions)
    if kind == "mix+emotions+pairs":  # the current and previous turns' emotions jointly
        parts.append(
            (emotions[:, :NUM_LABELS, None] * emotions[:, None, NUM_LABELS : 2 * NUM_LABELS]).reshape(len(mix), -1)
        )
    return np.hstack(parts)


def head(c: float, class_weight: str | None) -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight=class_weight, max_iter=2000))


def probabilities(model: Any, x: np.ndarray) -> np.ndarray:
    out = np.zeros((len(x), NUM_LABELS))
    out[:, model[-1].classes_] = model.predict_proba(x)
    return out


def out_of_fold(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, c: float, weight: str | None) -> np.ndarray:
    result = np.zeros((len(x), NUM_LABELS))
    for fit_rows, held_out in GroupKFold(5).split(x, labels, groups):
        result[held_out] = probabilities(head(c, weight).fit(x[fit_rows], labels[fit_rows]), x[held_out])
    return result


def figures(labels: np.ndarray, probs: np.ndarray, tau: float, prior: list[float]) -> str:
    values = headline_metrics(labels, decide(probs, "prior_corrected", tau, prior))
    return " / ".join(f"{values[k]:.3f}" for k in COLUMNS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="fine-tuning output_dir or model folder")
    parser.add_argument("--name", default=None, help="results file suffix (default: the folder's name)")
    parser.add_argument("--dataset", default=os.path.join(ROOT, "..", "shared", "data", "dailydialog"))
    args = parser.parse_args()
    classifier = load_classifier(args.model, device="cpu", knn_search="exact")
    if classifier.memory is None or not classifier.memory.trajectory_turns:
        raise UserError(f"{args.model} has no memory keyed on a trajectory; fine-tune one with trajectory_turns")
    prior = classifier.metadata["train_prior"]
    splits = prepare_splits(args.dataset, ["validation", "test"]).splits
    outputs = {split: split_outputs(classifier, rows) for split, rows in splits.items()}
    labels = {split: rows["label"].to_numpy() for split, rows in splits.items()}
    groups = splits["validation"]["dialog_id"].astype(str).to_numpy()

    def validation_fit(probs: np.ndarray) -> tuple[float, float]:
        tau, score, _ = fit_tau(probs, labels["validation"], prior, "Macro_F1")
        return score, tau

    lines = [f"model {args.model}; validation {len(groups):,} rows, test {len(labels['test']):,} rows"]
    base_tau = classifier.metadata["tau"]  # the model's own decision, fitted by its run
    base_score = headline_metrics(
        labels["validation"], decide(outputs["validation"]["mix"], "prior_corrected", base_tau, prior)
    )["Macro_F1"]
    lines.append(f"the model's forecast: validation Macro_F1 {base_score:.4f} (its tau {base_tau})")
    screened = {}
    for kind in FEATURES:
        x = features(outputs["validation"], kind)
        for c in (0.01, 0.1, 1.0):
            for weight in (None, "balanced"):
                score, tau = validation_fit(out_of_fold(x, labels["validation"], groups, c, weight))
                screened[(kind, c, weight)] = (score, tau)
                lines.append(f"head {kind}, C {c}, class_weight {weight}: out-of-fold validation Macro_F1 {score:.4f}")
    pick = max(screened, key=lambda key: screened[key][0])
    kind, c, weight = pick
    lines.append(f"pick: {pick}, {screened[pick][0]:.4f} against the model's {base_score:.4f}")
    fitted = head(c, weight).fit(features(outputs["validation"], kind), labels["validation"])
    seen = TrainSplit(args.dataset).seen(splits["test"]["text"])
    for given in (False, True):
        mode = "given emotions" if given else "recognised"
        mix = outputs["test"]["mix_given" if given else "mix"]
        stacked = probabilities(fitted, features(outputs["test"], kind, given))
        for name, probs, tau in (("model", mix, base_tau), ("head", stacked, screened[pick][1])):
            lines.append(
                f"test {mode}, {name}: {figures(labels['test'], probs, tau, prior)}; unseen rows "
                f"{figures(labels['test'][~seen], probs[~seen], tau, prior)} (accuracy / BA / weighted F1 / Macro_F1)"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    name = args.name or os.path.basename(os.path.normpath(args.model))
    write_text(os.path.join(ROOT, "bench", "results", f"stacking_screen-{name}.txt"), text)


if __name__ == "__main__":
    run_main(main)
