"""The fine-tuning run as a recipe of named stages, each on one screen:

1. `prepare_data`: load, check, shift, downsample (and rotate) the splits, then tokenize them;
   `prepare_recogniser`: the emotion recogniser a trajectory is read with (trained first, or loaded);
2. `build_model`: the base model with its head, pooling, warm start, loss, auxiliary task, LoRA;
3. `train`: the Trainer over the train rows, best checkpoint by validation;
4. `fit_forecasts`: decision rule and knn memory fitted on validation (`validation_fit.py`);
5. `save_outputs`: `model/` (and `adapter/`) with everything a predictor needs;
6. `report`: metrics, `metrics.json`, `report.txt`.

`run_fine_tuning` is the one code path behind `ep_fine_tune.py` (and each sweep trial). It
writes, atomically: `run_config.json`, `data_stats.json`, `checkpoints/`, `adapter/`, `model/`,
`metrics.json` and `report.txt`; once those are written, it exports `model/` to ONNX
(`export_onnx`) and prunes `checkpoints/` to the newest complete checkpoint (unless
`keep_checkpoints`). Under torchrun every process runs the recipe; only global rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainerCallback

from emotion_predictor.arguments import DataArguments, LossArguments, ModelArguments, TrainingConfig
from emotion_predictor.data.inputs import default_separator
from emotion_predictor.data.tokenize import tokenize_split
from emotion_predictor.data.utils import PreparedData, class_counts, format_stats_table, prepare_splits
from emotion_predictor.errors import UserError
from emotion_predictor.evaluation.metrics import balanced_class_weights, classification_metrics, format_report
from emotion_predictor.hub import hub_load_error
from emotion_predictor.labels import EMOTIONS, NUM_LABELS
from emotion_predictor.modeling.classification_head import warm_start_head
from emotion_predictor.modeling.onnx_export import export_model_folder
from emotion_predictor.modeling.sequence_classifier import (
    apply_lora,
    load_base_model,
    load_tokenizer,
    save_model,
    with_mean_pooling,
)
from emotion_predictor.output_files import write_json, write_text
from emotion_predictor.prediction.decision import decide_with_metadata, describe_decision, train_prior
from emotion_predictor.prediction.inference import Classifier, load_classifier
from emotion_predictor.progress import show_progress
from emotion_predictor.training.current_emotion_task import (
    COLUMN,
    CurrentEmotionTask,
    current_emotion_loss,
    require_current_emotions,
)
from emotion_predictor.training.focal_loss import class_weights_for
from emotion_predictor.training.neutral_rotation import NeutralRotation
from emotion_predictor.training.trainer import WeightedLossTrainer, build_loss, metrics_function, validation_curve
from emotion_predictor.training.trainer_settings import prune_checkpoints, resume_target, training_arguments
from emotion_predictor.training.validation_fit import (
    FinalForecasts,
    MemoryKey,
    final_forecasts,
    fit_decision,
    memory_rows,
)

logger = logging.getLogger(__name__)
RECOGNISER_RUN = "recogniser"  # the output_dir of the recogniser a run trains first (emotion_recogniser train)


@dataclasses.dataclass
class FineTuneResult:
    output_dir: str
    metrics: dict[str, Any]
    # Validation and test class probabilities of the final model, in row order (not written to
    # disk): benchmarks score other decision rules from them without re-running the model.
    probabilities: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class FineTuningRun:
    """A run's settings and where it writes: what every stage reads."""

    data_args: DataArguments
    model_args: ModelArguments
    loss_args: LossArguments
    cfg: TrainingConfig
    passthrough: dict[str, Any]
    # Under torchrun / accelerate launch every process runs the recipe; only global rank 0 writes.
    # The launcher's RANK says which one this is without initialising any distributed state.
    main_process: bool = dataclasses.field(default_factory=lambda: int(os.environ.get("RANK", "0")) == 0)

    @property
    def out(self) -> str:
        return self.cfg.output_dir


@dataclasses.dataclass
class RunData:
    """The prepared splits of a run and their tokenized form."""

    prepared: PreparedData
    all_train: pd.DataFrame  # every train row the Trainer draws from (the rotation's pool)
    rotation: NeutralRotation | None
    first_epoch: np.ndarray | None
    tokenizer: Any
    separator: str
    max_length: int
    tokenized: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def splits(self) -> dict[str, pd.DataFrame]:
        return self.prepared.splits

    @property
    def epoch_rows(self) -> Any:
        """The tokenized rows of one epoch: what class weights, prior and warm start see."""
        train = self.tokenized["train"]
        return train if self.first_epoch is None else train.select(self.first_epoch)

    def labels(self, split: str) -> np.ndarray:
        return self.splits[split]["label"].to_numpy()


@dataclasses.dataclass
class BuiltModel:
    """The model ready to train, with what was decided while building it."""

    model: torch.nn.Module
    head: str
    weights: list[float]
    f1_weights: list[float]
    loss_fn: Any
    warm_start: dict[str, float] | None
    current_emotion: CurrentEmotionTask | None


def run_fine_tuning(
    data_args: DataArguments,
    model_args: ModelArguments,
    loss_args: LossArguments,
    train_cfg: TrainingConfig,
    passthrough: dict[str, Any] | None = None,
    prepare_only: bool = False,
    callbacks: list[TrainerCallback] | None = None,
    score_test: bool = True,
) -> FineTuneResult:
    """Fine-tune per the config and write the run's outputs; see the module docstring.

    `score_test=False` leaves the test split unscored (studies that choose on validation only).
    """
    started = time.time()
    run = FineTuningRun(data_args, model_args, loss_args, train_cfg, dict(passthrough or {}))
    os.makedirs(run.out, exist_ok=True)
    data = prepare_data(run)
    # Checked before anything is written, like the data: a bad setting leaves no run behind.
    args = None if prepare_only else check_training_settings(run)
    if run.main_process:
        write_run_files(run, data.prepared)
    data.tokenized = tokenize_data(run, data)
    if prepare_only:
        return FineTuneResult(run.out, {})
    recogniser = prepare_recogniser(run, score_test)
    built = build_model(run, data, args.per_device_eval_batch_size)
    trainer = train(run, data, built, args, callbacks)
    scored = ("validation", "test") if score_test else ("validation",)
    final = fit_forecasts(run, data, trainer, recogniser, scored, args.per_device_eval_batch_size)
    metadata = run_metadata(run, data, built, final)
    merged = None
    if run.main_process:
        merged = save_model(trainer.model, data.tokenizer, run.out, metadata, final.memory, recogniser)
    results = report(run, data, built, trainer, final, metadata, scored)
    results["train_seconds"] = round(time.time() - started, 1)
    if run.main_process:
        write_json(os.path.join(run.out, "metrics.json"), results)
        export_for_onnx_runtime(train_cfg)
        if not train_cfg.keep_checkpoints:
            prune_checkpoints(run.out)
        if train_cfg.push_to_hub:
            push_to_hub(merged, data.tokenizer, train_cfg.fine_tuned_model)
    return FineTuneResult(run.out, results, final.probs)


# --------------------------------------------------------------------------- 1. data


def prepare_data(run: FineTuningRun) -> RunData:
    """The shifted splits, downsampled (or rotated) train rows, and the input settings."""
    data_args, cfg = run.data_args, run.cfg
    tokenizer = load_tokenizer(run.model_args.model_name_or_path, run.model_args.trust_remote_code)
    separator = data_args.context_separator if data_args.context_separator is not None else default_separator(tokenizer)
    model_limit = getattr(tokenizer, "model_max_length", data_args.max_length) or data_args.max_length
    rotating = data_args.resample_neutral_each_epoch
    prepared = prepare_splits(
        data_args.dataset,
        context_turns=data_args.context_turns,
        neutral_keep_ratio=1.0 if rotating else data_args.neutral_keep_ratio,
        seed=cfg.seed,
        dataset_config=data_args.dataset_config,
        max_rows={"train": data_args.max_train_samples, "validation": data_args.max_eval_samples},
        task=data_args.task,
    )
    data = RunData(
        prepared, prepared.splits["train"], None, None, tokenizer, separator, min(data_args.max_length, model_limit)
    )
    if run.loss_args.current_emotion_loss_weight > 0:
        require_current_emotions(data.all_train, run.loss_args.current_emotion_loss_weight, data_args.dataset)
    if rotating:
        # The Trainer draws from every train row; weights, prior and warm start see one epoch's rows.
        data.rotation = NeutralRotation(data.all_train["label"].to_numpy(), data_args.neutral_keep_ratio, cfg.seed)
        data.first_epoch = data.rotation.epoch_indices(0)
        prepared.splits["train"] = data.all_train.iloc[data.first_epoch].reset_index(drop=True)
        prepared.stats["splits"]["train"].update(
            neutral_keep_ratio=data_args.neutral_keep_ratio,
            resample_neutral_each_epoch=True,
            rows_per_epoch=len(data.rotation),
            counts_per_epoch=class_counts(prepared.splits["train"]["label"]),
        )
    return data


def check_training_settings(run: FineTuningRun) -> Any:
    """The run's TrainingArguments, refused with one line when a setting cannot work."""
    args = training_arguments(run.cfg, run.passthrough)
    if run.data_args.task == "recognise" and (run.cfg.emotion_recogniser or run.cfg.trajectory_turns):
        raise UserError(
            "task is recognise (a recogniser of each utterance's own emotion), which reads no trajectory: "
            "drop emotion_recogniser and trajectory_turns from this run"
        )
    if run.loss_args.current_emotion_loss_weight > 0 and args.n_gpu > 1:
        # DataParallel runs replicas of the model in threads; the auxiliary head reads one device's features.
        raise UserError(
            f"current_emotion_loss_weight needs one process per GPU: launch with torchrun --nproc_per_node "
            f"{args.n_gpu} (or make one GPU visible with CUDA_VISIBLE_DEVICES)"
        )
    return args


def write_run_files(run: FineTuningRun, prepared: PreparedData) -> None:
    """run_config.json and data_stats.json, once the data has passed its checks."""
    settings = {
        k: v for a in (run.data_args, run.model_args, run.loss_args, run.cfg) for k, v in dataclasses.asdict(a).items()
    }
    write_json(os.path.join(run.out, "run_config.json"), {**settings, **run.passthrough})
    write_json(os.path.join(run.out, "data_stats.json"), prepared.stats)
    print(format_stats_table(prepared.stats))


def tokenize_data(run: FineTuningRun, data: RunData) -> dict[str, Any]:
    """Each split tokenized (cached), the train split with every row the Trainer may draw."""
    frames = {**data.splits, "train": data.all_train}
    return {
        split: tokenize_split(frame, data.tokenizer, data.separator, data.max_length, run.data_args.data_cache_dir)
        for split, frame in frames.items()
    }


def prepare_recogniser(run: FineTuningRun, score_test: bool) -> Classifier | None:
    """The emotion recogniser of `emotion_recogniser`: trained first by a run of its own (task
    recognise, same data and base model, in `output_dir/recogniser`), or loaded; None without one."""
    source = run.cfg.emotion_recogniser
    if not source:
        return None
    if source == "train":
        data_args = dataclasses.replace(
            run.data_args, task="recognise", max_train_samples=run.cfg.recogniser_train_samples
        )
        cfg = dataclasses.replace(
            run.cfg,
            output_dir=os.path.join(run.out, RECOGNISER_RUN),
            num_train_epochs=run.cfg.recogniser_epochs,
            knn_memory="none",
            trajectory_turns=0,
            emotion_recogniser=None,
            decision_rule="argmax",
            push_to_hub=False,
        )
        logger.info("emotion_recogniser train: fine-tuning a recogniser of each utterance's own emotion first")
        run_fine_tuning(data_args, run.model_args, run.loss_args, cfg, run.passthrough, score_test=score_test)
        source = os.path.join(cfg.output_dir, "model")
    recogniser = load_classifier(source, device="auto", context_turns=0)
    recogniser.model.eval()
    return recogniser


# --------------------------------------------------------------------------- 2. model


def build_model(run: FineTuningRun, data: RunData, batch_size: int) -> BuiltModel:
    """The base model with its head (warm-started), pooling, loss, auxiliary task and LoRA."""
    model_args, loss_args = run.model_args, run.loss_args
    train_labels = data.labels("train")
    weights = class_weights_for(loss_args.class_weights, train_labels)
    logger.info("Class weights: %s", ", ".join(f"{n} {w:.3f}" for n, w in zip(EMOTIONS, weights)))
    torch.manual_seed(run.cfg.seed)
    model, head = load_base_model(model_args.model_name_or_path, model_args.trust_remote_code)
    if model_args.pooling == "mean":
        model = with_mean_pooling(model)
    warm_start = None
    if run.cfg.head_warm_start == "logistic_regression" and resume_target(run.cfg) is None:
        # Before LoRA wraps the model: PEFT copies the (warm) head into its modules_to_save.
        collator = DataCollatorWithPadding(data.tokenizer)
        warm_start = warm_start_head(model, data.epoch_rows, train_labels, weights, collator, batch_size)
    loss_fn = build_loss(loss_args, weights)
    current_emotion = None
    if loss_args.current_emotion_loss_weight > 0:
        data.tokenized["train"] = data.tokenized["train"].add_column(COLUMN, data.all_train["current_label"].tolist())
        current_loss = current_emotion_loss(
            loss_fn, loss_args.class_weights, data.splits["train"]["current_label"].to_numpy()
        )
        current_emotion = CurrentEmotionTask(model, loss_args.current_emotion_loss_weight, current_loss)
    if model_args.use_lora:
        model = apply_lora(model, model_args)
    if current_emotion is not None:
        current_emotion.watch(model)
    # F1-all-class has one definition whatever the loss: balanced weights of the train labels.
    f1_weights = balanced_class_weights(train_labels)
    return BuiltModel(model, head, weights, f1_weights, loss_fn, warm_start, current_emotion)


# --------------------------------------------------------------------------- 3. training


def train(
    run: FineTuningRun, data: RunData, built: BuiltModel, args: Any, callbacks: list[TrainerCallback] | None
) -> Trainer:
    """Train (or resume), keeping the best checkpoint by validation; the trained model is `trainer.model`."""
    if run.cfg.early_stopping_patience is not None:
        callbacks = [*(callbacks or []), EarlyStoppingCallback(run.cfg.early_stopping_patience)]
    trainer = WeightedLossTrainer(
        model=built.model,
        args=args,
        train_dataset=data.tokenized["train"],
        eval_dataset=data.tokenized["validation"],
        data_collator=DataCollatorWithPadding(data.tokenizer),
        processing_class=data.tokenizer,
        compute_metrics=metrics_function(built.f1_weights),
        callbacks=callbacks,
        loss_fn=built.loss_fn,
        head_learning_rate=run.cfg.head_learning_rate,
        rotation=data.rotation,
        current_emotion=built.current_emotion,
    )
    show_progress(trainer)
    trainer.train(resume_from_checkpoint=resume_target(run.cfg))
    if built.current_emotion is not None:
        built.current_emotion.detach(trainer.model)
    trainer.model.eval()
    return trainer


# --------------------------------------------------------------------------- 4. fitting on validation


def fit_forecasts(
    run: FineTuningRun,
    data: RunData,
    trainer: Trainer,
    recogniser: Classifier | None,
    scored: tuple[str, ...],
    batch_size: int,
) -> FinalForecasts:
    """The trained classifier's probabilities on the scored splits, with the decision rule and
    knn memory fitted on validation (the trajectory's emotions recognised, never read)."""
    device = next(trainer.model.parameters()).device
    order = list(range(NUM_LABELS))
    trained = Classifier(trainer.model, data.tokenizer, "trained", 0, data.separator, data.max_length, order, device)
    trained.recogniser = recogniser
    prior = train_prior(data.labels("train"))
    f1_weights = balanced_class_weights(data.labels("train"))
    memory_frame = None if run.cfg.knn_memory == "none" else memory_rows(run.cfg, run.data_args, data.all_train)
    return final_forecasts(
        trained,
        {split: data.splits[split] for split in scored},
        memory_frame,
        prior,
        batch_size,
        lambda p: fit_decision(run.cfg, p, data.labels("validation"), prior, f1_weights),
        MemoryKey(run.cfg.knn_memory_turns, run.cfg.trajectory_turns),
    )


# --------------------------------------------------------------------------- 5. saving


def run_metadata(run: FineTuningRun, data: RunData, built: BuiltModel, final: FinalForecasts) -> dict[str, Any]:
    """What `emotion_predictor.json` records: the input settings, labels, decision rule and memory."""
    return {
        "context_turns": run.data_args.context_turns,
        "context_separator": data.separator,
        "max_length": data.max_length,
        "class_names": EMOTIONS,
        "class_weights": built.weights,
        "f1_all_class_weights": built.f1_weights,
        "base_model": run.model_args.model_name_or_path,
        "head": built.head,
        "pooling": run.model_args.pooling,
        "train_prior": train_prior(data.labels("train")),
        **final.decision,
        "knn_memory": None if final.memory is None else final.memory.settings(run.cfg.knn_memory),
        "task": run.data_args.task,
        "emotion_recogniser": run.cfg.emotion_recogniser,
    }


def export_for_onnx_runtime(cfg: TrainingConfig) -> None:
    """`model/model.onnx` (and its int8 copy) as `export_onnx` says. A model that does not export
    costs the run nothing else: its other outputs are written by then."""
    if cfg.export_onnx == "none":
        return
    try:
        export_model_folder(os.path.join(cfg.output_dir, "model"), int8=cfg.export_onnx == "fp32+int8")
    except UserError as err:
        logger.warning("No ONNX export (export_onnx %s): %s", cfg.export_onnx, err)


def push_to_hub(merged: torch.nn.Module, tokenizer: Any, target: str) -> None:
    try:
        merged.push_to_hub(target)
        tokenizer.push_to_hub(target)
    except Exception as err:  # the Hub client raises many types; all mean "push failed"
        raise hub_load_error(target, "push target", err) from None


# --------------------------------------------------------------------------- 6. report


def report(
    run: FineTuningRun,
    data: RunData,
    built: BuiltModel,
    trainer: Trainer,
    final: FinalForecasts,
    metadata: dict[str, Any],
    scored: tuple[str, ...],
) -> dict[str, Any]:
    """metrics.json's figures of the scored splits; report.txt (main process) for the test split."""
    results: dict[str, Any] = {
        "head": built.head,
        "class_weights": built.weights,
        "f1_all_class_weights": built.f1_weights,
        **final.decision,
        "knn_memory": metadata["knn_memory"],
        "validation_classifier_alone": classification_metrics(
            data.labels("validation"),
            decide_with_metadata(final.classifier_probs["validation"], final.classifier_decision),
            built.f1_weights,
        ),
        "head_warm_start": built.warm_start,
        "epochs_trained": round(trainer.state.epoch or 0, 3),
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "validation_curve": validation_curve(trainer.state.log_history),
    }
    for split in scored:
        predictions = decide_with_metadata(final.probs[split], metadata)
        results[split] = classification_metrics(data.labels(split), predictions, built.f1_weights)
        if metadata["decision_rule"] != "argmax":
            results[f"{split}_argmax"] = classification_metrics(
                data.labels(split), final.probs[split].argmax(-1), built.f1_weights
            )
    if "test" not in scored:
        text = "test split not scored (score_test=False)\n"
    else:
        predicted = decide_with_metadata(final.probs["test"], metadata)
        text = format_report(
            data.labels("test"), predicted, results["test"], describe_decision(metadata), built.f1_weights
        )
    if run.main_process:
        write_text(os.path.join(run.out, "report.txt"), text)
        print(text)
    return results
