"""The fine-tuning run: data, model, loss, Trainer, and everything written to `output_dir`.

`run_fine_tuning` is the one code path behind `ep_fine_tune.py` (and each sweep trial). It
writes, atomically: `run_config.json`, `data_stats.json`, `checkpoints/`, `adapter/`, `model/`,
`metrics.json` and `report.txt`; once those are written, it exports `model/` to ONNX
(`export_onnx`) and prunes `checkpoints/` to the newest complete checkpoint (unless
`keep_checkpoints`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any

import numpy as np
import torch
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainerCallback

from emotion_predictor.arguments import DataArguments, LossArguments, ModelArguments, TrainingConfig
from emotion_predictor.data.inputs import default_separator
from emotion_predictor.data.tokenize import tokenize_split
from emotion_predictor.data.utils import class_counts, format_stats_table, prepare_splits
from emotion_predictor.errors import UserError
from emotion_predictor.evaluation.metrics import balanced_class_weights, classification_metrics, format_report
from emotion_predictor.hub import hub_load_error
from emotion_predictor.labels import EMOTIONS, NUM_LABELS
from emotion_predictor.modeling.classification_head import split_head_param_groups, warm_start_head
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
from emotion_predictor.prediction.inference import Classifier
from emotion_predictor.progress import show_progress
from emotion_predictor.training.current_emotion_task import (
    COLUMN,
    CurrentEmotionTask,
    current_emotion_loss,
    require_current_emotions,
)
from emotion_predictor.training.focal_loss import FocalLoss, class_weights_for
from emotion_predictor.training.length_bucketing import LengthBucketSampler
from emotion_predictor.training.neutral_rotation import NeutralRotation, NeutralRotationSampler
from emotion_predictor.training.trainer_settings import prune_checkpoints, resume_target, training_arguments
from emotion_predictor.training.validation_fit import final_forecasts, fit_decision, memory_rows

logger = logging.getLogger(__name__)


def build_loss(loss_args: LossArguments, weights: list[float]) -> FocalLoss:
    """Focal loss, or cross entropy as focal loss with gamma 0 (the same code path)."""
    gamma = loss_args.focal_gamma if loss_args.loss == "focal" else 0.0
    return FocalLoss(alpha=weights, gamma=gamma, reduction="sum")


class WeightedLossTrainer(Trainer):
    """A Trainer whose loss is our (focal or cross-entropy) loss with class weights, plus the
    auxiliary current-emotion loss when there is one (`current_emotion_task.py`), and whose
    length-grouped batches come from `LengthBucketSampler` (or `NeutralRotationSampler`).

    `compute_loss` sums the per-example losses and divides by `num_items_in_batch`, the number of
    examples in the whole accumulated batch, so gradient accumulation gives the same gradient as
    one large batch.
    """

    loss_is_scaled_for_ga = True

    def __init__(
        self,
        *args: Any,
        loss_fn: FocalLoss,
        head_learning_rate: float | None = None,
        rotation: NeutralRotation | None = None,
        current_emotion: CurrentEmotionTask | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.loss_fn = loss_fn
        self.head_learning_rate = head_learning_rate
        self.rotation = rotation
        self.current_emotion = current_emotion
        # Makes Trainer count `num_items_in_batch` across accumulated micro-batches for us.
        self.model_accepts_loss_kwargs = True

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if fresh and self.head_learning_rate is not None:
            moved = split_head_param_groups(optimizer, self.model, self.head_learning_rate)
            logger.info("Head learning rate %g for %d parameter tensors", self.head_learning_rate, moved)
        return optimizer

    def _set_signature_columns_if_needed(self) -> None:
        # The model's forward does not take the current emotions; compute_loss does.
        super()._set_signature_columns_if_needed()
        if self.current_emotion is not None and COLUMN not in self._signature_columns:
            self._signature_columns.append(COLUMN)

    def _get_train_sampler(self, train_dataset: Any = None) -> torch.utils.data.Sampler | None:
        grouped = self.args.train_sampling_strategy == "group_by_length"
        if not grouped and self.rotation is None:
            return super()._get_train_sampler(train_dataset)
        lengths = None
        if grouped:
            # Trainer hands us a copy without the columns the model does not take ("length" among
            # them); it keeps every row in place, so the original's lengths still index it.
            source = self.train_dataset
            if "length" in getattr(source, "column_names", ()):
                lengths = source["length"]
            else:
                lengths = [len(ids) for ids in (train_dataset if train_dataset is not None else source)["input_ids"]]
        if self.rotation is not None:
            return NeutralRotationSampler(self.rotation, lengths, self.args.train_batch_size)
        return LengthBucketSampler(lengths, self.args.train_batch_size)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        labels = inputs.pop("labels")
        current = inputs.pop(COLUMN, None)  # train batches only: evaluation stays the plain forecast
        outputs = model(**inputs)
        total = self.loss_fn(outputs.logits, labels)
        if current is not None:
            total = total + self.current_emotion.loss_sum(current)
        count = num_items_in_batch if num_items_in_batch is not None else labels.numel()
        loss = total / count
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # The count is then summed over all processes, while DDP averages their gradients: undo the
            # average as Trainer.compute_loss does (tensor-parallel ranks share a batch, so they count once).
            # Under DataParallel (one process, n_gpu > 1) our loss already covers every GPU's rows.
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return (loss, outputs) if return_outputs else loss


def export_for_onnx_runtime(cfg: TrainingConfig) -> None:
    """`model/model.onnx` (and its int8 copy) as `export_onnx` says. A model that does not export
    costs the run nothing else: its other outputs are written by then."""
    if cfg.export_onnx == "none":
        return
    try:
        export_model_folder(os.path.join(cfg.output_dir, "model"), int8=cfg.export_onnx == "fp32+int8")
    except UserError as err:
        logger.warning("No ONNX export (export_onnx %s): %s", cfg.export_onnx, err)


def metrics_function(weights: list[float]):
    def compute(prediction: Any) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return classification_metrics(prediction.label_ids, np.argmax(logits, axis=-1), weights)

    return compute


def validation_curve(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """One entry per evaluation during training: epoch, step and the validation metrics (argmax)."""
    return [
        {
            "epoch": round(e["epoch"], 3),
            "step": e["step"],
            **{k[5:]: v for k, v in e.items() if k.startswith("eval_") and isinstance(v, float)},
        }
        for e in log_history
        if "eval_loss" in e
    ]


@dataclasses.dataclass
class FineTuneResult:
    output_dir: str
    metrics: dict[str, Any]
    # Validation and test class probabilities of the final model, in row order (not written to
    # disk): benchmarks score other decision rules from them without re-running the model.
    probabilities: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


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
    passthrough = dict(passthrough or {})
    started = time.time()
    out = train_cfg.output_dir
    # Under torchrun / accelerate launch every process runs this function; only global rank 0 writes.
    # The launcher's RANK says which one this is without initialising any distributed state.
    main_process = int(os.environ.get("RANK", "0")) == 0
    os.makedirs(out, exist_ok=True)
    tokenizer = load_tokenizer(model_args.model_name_or_path, model_args.trust_remote_code)
    separator = data_args.context_separator if data_args.context_separator is not None else default_separator(tokenizer)
    max_length = min(
        data_args.max_length, getattr(tokenizer, "model_max_length", data_args.max_length) or data_args.max_length
    )

    rotating = data_args.resample_neutral_each_epoch
    data = prepare_splits(
        data_args.dataset,
        context_turns=data_args.context_turns,
        neutral_keep_ratio=1.0 if rotating else data_args.neutral_keep_ratio,
        seed=train_cfg.seed,
        dataset_config=data_args.dataset_config,
        max_rows={"train": data_args.max_train_samples, "validation": data_args.max_eval_samples},
    )
    # The Trainer draws from every train row; weights, prior and warm start see one epoch's rows.
    all_train, rotation, first_epoch = data.splits["train"], None, None
    if loss_args.current_emotion_loss_weight > 0:
        require_current_emotions(all_train, loss_args.current_emotion_loss_weight, data_args.dataset)
    if rotating:
        rotation = NeutralRotation(all_train["label"].to_numpy(), data_args.neutral_keep_ratio, train_cfg.seed)
        first_epoch = rotation.epoch_indices(0)
        data.splits["train"] = all_train.iloc[first_epoch].reset_index(drop=True)
        data.stats["splits"]["train"].update(
            neutral_keep_ratio=data_args.neutral_keep_ratio,
            resample_neutral_each_epoch=True,
            rows_per_epoch=len(rotation),
            counts_per_epoch=class_counts(data.splits["train"]["label"]),
        )
    # Checked before anything is written, like the data: a bad setting leaves no run behind.
    args = None if prepare_only else training_arguments(train_cfg, passthrough)
    if args is not None and loss_args.current_emotion_loss_weight > 0 and args.n_gpu > 1:
        # DataParallel runs replicas of the model in threads; the auxiliary head reads one device's features.
        raise UserError(
            f"current_emotion_loss_weight needs one process per GPU: launch with torchrun --nproc_per_node "
            f"{args.n_gpu} (or make one GPU visible with CUDA_VISIBLE_DEVICES)"
        )
    if main_process:
        # Written once the data has passed its checks: a bad dataset leaves no run behind.
        write_json(
            os.path.join(out, "run_config.json"),
            {
                **{
                    k: v
                    for a in (data_args, model_args, loss_args, train_cfg)
                    for k, v in dataclasses.asdict(a).items()
                },
                **passthrough,
            },
        )
        write_json(os.path.join(out, "data_stats.json"), data.stats)
        print(format_stats_table(data.stats))
    tokenized = {
        split: tokenize_split(frame, tokenizer, separator, max_length, data_args.data_cache_dir)
        for split, frame in {**data.splits, "train": all_train}.items()
    }
    epoch_rows = tokenized["train"] if first_epoch is None else tokenized["train"].select(first_epoch)
    if prepare_only:
        return FineTuneResult(out, {})

    weights = class_weights_for(loss_args.class_weights, data.splits["train"]["label"].to_numpy())
    logger.info("Class weights: %s", ", ".join(f"{n} {w:.3f}" for n, w in zip(EMOTIONS, weights)))
    # F1-all-class has one definition whatever the loss: balanced weights of the train labels.
    f1_weights = balanced_class_weights(data.splits["train"]["label"].to_numpy())
    torch.manual_seed(train_cfg.seed)
    model, head = load_base_model(model_args.model_name_or_path, model_args.trust_remote_code)
    if model_args.pooling == "mean":
        model = with_mean_pooling(model)
    collator = DataCollatorWithPadding(tokenizer)
    resume = resume_target(train_cfg)
    warm_start = None
    if train_cfg.head_warm_start == "logistic_regression" and resume is None:
        # Before LoRA wraps the model: PEFT copies the (warm) head into its modules_to_save.
        warm_start = warm_start_head(
            model,
            epoch_rows,
            data.splits["train"]["label"].to_numpy(),
            weights,
            collator,
            args.per_device_eval_batch_size,
        )
    loss_fn = build_loss(loss_args, weights)
    current_emotion = None
    if loss_args.current_emotion_loss_weight > 0:
        tokenized["train"] = tokenized["train"].add_column(COLUMN, all_train["current_label"].tolist())
        epoch_current = data.splits["train"]["current_label"].to_numpy()
        current_emotion = CurrentEmotionTask(
            model,
            loss_args.current_emotion_loss_weight,
            current_emotion_loss(loss_fn, loss_args.class_weights, epoch_current),
        )
    if model_args.use_lora:
        model = apply_lora(model, model_args)
    if current_emotion is not None:
        current_emotion.watch(model)
    if train_cfg.early_stopping_patience is not None:
        callbacks = [*(callbacks or []), EarlyStoppingCallback(train_cfg.early_stopping_patience)]
    trainer = WeightedLossTrainer(
        model=model,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=metrics_function(f1_weights),
        callbacks=callbacks,
        loss_fn=loss_fn,
        head_learning_rate=train_cfg.head_learning_rate,
        rotation=rotation,
        current_emotion=current_emotion,
    )
    show_progress(trainer)
    trainer.train(resume_from_checkpoint=resume)
    if current_emotion is not None:
        current_emotion.detach(trainer.model)

    scored = ("validation", "test") if score_test else ("validation",)
    trainer.model.eval()
    device = next(trainer.model.parameters()).device
    trained = Classifier(
        trainer.model, tokenizer, "trained model", 0, separator, max_length, list(range(NUM_LABELS)), device
    )
    prior = train_prior(data.splits["train"]["label"])
    val_labels = data.splits["validation"]["label"].to_numpy()
    final = final_forecasts(
        trained,
        {split: data.splits[split] for split in scored},
        None if train_cfg.knn_memory == "none" else memory_rows(train_cfg, data_args, all_train),
        prior,
        args.per_device_eval_batch_size,
        lambda p: fit_decision(train_cfg, p, val_labels, prior, f1_weights),
        train_cfg.knn_memory_turns,
    )
    probs, decision, memory = final.probs, final.decision, final.memory
    labels = {split: data.splits[split]["label"].to_numpy() for split in scored}
    metadata = {
        "context_turns": data_args.context_turns,
        "context_separator": separator,
        "max_length": max_length,
        "class_names": EMOTIONS,
        "class_weights": weights,
        "f1_all_class_weights": f1_weights,
        "base_model": model_args.model_name_or_path,
        "head": head,
        "pooling": model_args.pooling,
        "train_prior": prior,
        **decision,
        "knn_memory": None if memory is None else memory.settings(train_cfg.knn_memory),
    }
    if main_process:
        merged = save_model(trainer.model, tokenizer, out, metadata, memory)
    results: dict[str, Any] = {
        "head": head,
        "class_weights": weights,
        "f1_all_class_weights": f1_weights,
        **decision,
        "knn_memory": metadata["knn_memory"],
        "validation_classifier_alone": classification_metrics(
            val_labels,
            decide_with_metadata(final.classifier_probs["validation"], final.classifier_decision),
            f1_weights,
        ),
        "head_warm_start": warm_start,
        "epochs_trained": round(trainer.state.epoch or 0, 3),
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "validation_curve": validation_curve(trainer.state.log_history),
    }
    for split in scored:
        predictions = decide_with_metadata(probs[split], metadata)
        results[split] = classification_metrics(labels[split], predictions, f1_weights)
        if decision["decision_rule"] != "argmax":
            results[f"{split}_argmax"] = classification_metrics(labels[split], probs[split].argmax(-1), f1_weights)
    report = (
        format_report(
            labels["test"],
            decide_with_metadata(probs["test"], metadata),
            results["test"],
            describe_decision(metadata),
            f1_weights,
        )
        if score_test
        else "test split not scored (score_test=False)\n"
    )
    results["train_seconds"] = round(time.time() - started, 1)
    if not main_process:
        return FineTuneResult(out, results, probs)
    write_text(os.path.join(out, "report.txt"), report)
    print(report)
    write_json(os.path.join(out, "metrics.json"), results)
    export_for_onnx_runtime(train_cfg)
    if not train_cfg.keep_checkpoints:
        prune_checkpoints(out)
    if train_cfg.push_to_hub:
        try:
            merged.push_to_hub(train_cfg.fine_tuned_model)
            tokenizer.push_to_hub(train_cfg.fine_tuned_model)
        except Exception as err:  # the Hub client raises many types; all mean "push failed"
            raise hub_load_error(train_cfg.fine_tuned_model, "push target", err) from None
    return FineTuneResult(out, results, probs)
