"""What an evaluation takes from the train split of its dataset.

- `TrainRecipe`: how a fine-tuned model chose its train and validation rows (`neutral_keep_ratio`,
  `max_train_samples`, `max_eval_samples`, `seed`), read from the `run_config.json` of its
  fine-tuning output_dir. A model without one (a copied model folder, a zero-shot base model)
  gets the full train and validation splits, and the recipe says so.
- `TrainSplit`: the evaluation dataset's train split, loaded once per evaluation and per recipe:
  the train labels a recipe yields (F1-all-class weights of models saved before the weights were
  stored with them), its train and validation rows (what the baselines are fitted on) and the
  train utterances that decide which evaluated rows are "seen".

Seen (`SEEN_DEFINITION`): the row's current utterance, exactly as written in the data (no case
folding, no whitespace trimming), is the current utterance of at least one row of the full train
split, i.e. of a train utterance that has a next turn, before neutral downsampling and sampling.
These are the inputs a model fine-tuned on that split may have been trained on, with a label.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from emotion_predictor.data.utils import prepare_splits

RUN_CONFIG = "run_config.json"
FULL_SPLITS = "the full train and validation splits"
SEEN_DEFINITION = (
    "seen = the current utterance, exactly as in the data, is the current utterance of a row of the "
    "full train split (a train utterance with a next turn, before downsampling and sampling)"
)


@dataclass(frozen=True)
class TrainRecipe:
    """The rows a model was fine-tuned (and its decision rule fitted) on; defaults: all of them."""

    neutral_keep_ratio: float = 1.0
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    seed: int = 42
    source: str = f"no {RUN_CONFIG} with the model: {FULL_SPLITS}"

    def describe(self) -> str:
        if self.source.startswith("no "):
            return self.source
        sampled = f", at most {self.max_train_samples} train rows" if self.max_train_samples else ""
        validation = f", at most {self.max_eval_samples} validation rows" if self.max_eval_samples else ""
        return (
            f"train split with neutral_keep_ratio {self.neutral_keep_ratio:g}{sampled}{validation} "
            f"(seed {self.seed}), as in {self.source}"
        )


def recipe_of(model_folder: str) -> TrainRecipe:
    """The recipe in the run_config.json of the fine-tuning output_dir holding `model_folder`
    (its `model/` or `adapter/` folder, or the output_dir itself)."""
    folders = [model_folder]
    if os.path.basename(os.path.normpath(model_folder)) in ("model", "adapter"):
        folders.append(os.path.dirname(os.path.normpath(model_folder)))
    for folder in folders:
        path = os.path.join(folder, RUN_CONFIG)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                config = json.load(handle)
            return TrainRecipe(
                neutral_keep_ratio=float(config.get("neutral_keep_ratio", 1.0)),
                max_train_samples=config.get("max_train_samples"),
                max_eval_samples=config.get("max_eval_samples"),
                seed=int(config.get("seed", 42)),
                source=path,
            )
    return TrainRecipe()


class TrainSplit:
    """The train (and validation) rows of one dataset, loaded on first use and kept."""

    def __init__(self, dataset: str, dataset_config: str | None = None) -> None:
        self.dataset = dataset
        self.dataset_config = dataset_config
        self._labels: dict[TrainRecipe, np.ndarray] = {}

    def rows(self, recipe: TrainRecipe, context_turns: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The recipe's train rows (downsampled, sampled) and validation rows, with context."""
        data = prepare_splits(
            self.dataset,
            splits=["train", "validation"],
            context_turns=context_turns,
            neutral_keep_ratio=recipe.neutral_keep_ratio,
            seed=recipe.seed,
            dataset_config=self.dataset_config,
            max_rows={"train": recipe.max_train_samples, "validation": recipe.max_eval_samples},
        )
        return data.splits["train"], data.splits["validation"]

    def labels(self, recipe: TrainRecipe) -> np.ndarray:
        """The recipe's train labels (they do not depend on the context setting)."""
        if recipe not in self._labels:
            self._labels[recipe] = self.rows(recipe, 0)[0]["label"].to_numpy()
        return self._labels[recipe]

    @cached_property
    def utterances(self) -> frozenset[str]:
        """The current utterances of every row of the full train split."""
        frame = prepare_splits(self.dataset, splits=["train"], dataset_config=self.dataset_config).splits["train"]
        return frozenset(frame["text"])

    def seen(self, texts: pd.Series) -> np.ndarray:
        """Per row of `texts` (current utterances): is it seen (see `SEEN_DEFINITION`)?"""
        return texts.isin(self.utterances).to_numpy()
