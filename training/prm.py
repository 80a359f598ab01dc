"""PRM training around TRL's PRMTrainer: model and tokenizer building, soft-label tokenization and loss, saving.

Every style (token classification and the generative +/- chat and step-tag styles) trains with one Trainer subclass
of PRMTrainer and one loss: soft cross-entropy over a 2-way (bad, good) distribution at the judgement positions.
TRL's SFTTrainer with a completion-only loss was not used for the generative styles: its loss is over the whole
vocabulary at every completion token (here: also the turn-end tokens), it takes no soft targets, and it cannot
restrict the distribution to the good/bad pair the scorers read.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForTokenClassification,
    AutoTokenizer,
    TrainerCallback,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

# trl.experimental.prm exists in trl 0.26-1.13 only (pinned in pyproject): PRMTrainer is used here only
# (training/config.py subclasses its PRMConfig).
from trl import TrlParser
from trl.experimental.prm import PRMTrainer

from data_prep.labels import STEP_LABEL_FORMATS, mix_step_labels, read_step_labels, tokenize_steps
from data_prep.prm_metadata import PRMMetadata
from data_prep.records import StepLabels
from data_prep.steps import STEP_SEPARATOR, SYSTEM_PROMPT
from training.config import MODEL_SHAPES, DataArguments, ModelArguments, TtcPRMConfig
from training.likelihood_head import (
    LIKELIHOOD_HEAD_STYLE,
    LikelihoodHeadCollator,
    LikelihoodHeadModel,
    layout_row,
)
from training.likelihood_head import PROMPT_FORMAT as LIKELIHOOD_HEAD_PROMPT_FORMAT
from training.implicit import IMPLICIT_STYLE, ImplicitPRMModel, outcome_label
from training.implicit import PROMPT_FORMAT as IMPLICIT_PROMPT_FORMAT
from training.generative import (
    IGNORE_INDEX,
    JUDGEMENT_STYLES,
    PROMPT_FORMATS,
    PRMInputError,
    check_texts_fit_style,
    judgement_pair_logits,
    judgement_token_ids,
    judgement_tokens,
)

logger = logging.getLogger(__name__)

NUM_LABELS = 2
ID2LABEL = {0: "bad", 1: "good"}
POSITIVE_LABEL = 1
BASE_SUBDIR = "base"
"""Where a LoRA run on a random `init_from_config` base saves that base, so the adapter loads offline."""
PROMPT_FORMAT = "raw problem text, no system prompt or chat template; input = [bos] + prompt + (step + separator)*"


# --------------------------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------------------------


def make_parser() -> TrlParser:
    return TrlParser((ModelArguments, DataArguments, TtcPRMConfig))


def parse_args(argv: Sequence[str] | None = None) -> tuple[ModelArguments, DataArguments, TtcPRMConfig, str | None]:
    """Parse `--config x.yaml` plus CLI overrides (unknown keys are errors); also return the config's name."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config_name = Path(argv[argv.index("--config") + 1]).stem if "--config" in argv[:-1] else None
    model_args, data_args, training_args = make_parser().parse_args_and_config(argv)
    return model_args, data_args, training_args, config_name


# --------------------------------------------------------------------------------------------------------------------
# Tokenizer and model
# --------------------------------------------------------------------------------------------------------------------


def load_tokenizer(model_args: ModelArguments) -> Any:
    """The tokenizer named by the config; the tiny shape without a tokenizer path gets the built-in tiny tokenizer."""
    source = model_args.tokenizer_name_or_path or model_args.model_name_or_path
    if source is None:
        if model_args.init_from_config != "tiny":
            raise ValueError(
                f"init_from_config={model_args.init_from_config!r} needs tokenizer_name_or_path "
                "(only the `tiny` shape has a built-in tokenizer)"
            )
        from data_prep.tokenizer import build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()
    else:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=model_args.trust_remote_code)
    if tokenizer.pad_token_id is None:
        logger.warning("tokenizer has no pad token; padding with eos %r (padding is masked out)", tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def _torch_dtype(name: str) -> torch.dtype | str:
    return name if name == "auto" else getattr(torch, name)


def build_model_config(model_args: ModelArguments, tokenizer: Any, *, causal_lm: bool = False) -> Any:
    """The config of a random model: a named shape from MODEL_SHAPES or a config.json, with 2 PRM classes
    (a causal LM, for the generative styles, keeps its LM head and gets no classes)."""
    source = model_args.init_from_config
    if source in MODEL_SHAPES:
        shape = dict(MODEL_SHAPES[source])
        shape.setdefault("vocab_size", len(tokenizer))
        config = AutoConfig.for_model("llama", **shape)
    elif source is not None and Path(source).exists():
        config = AutoConfig.from_pretrained(source, trust_remote_code=model_args.trust_remote_code)
    else:
        raise ValueError(
            f"init_from_config={source!r} is neither a named shape {sorted(MODEL_SHAPES)} nor an existing config "
            "file or directory; fix the name or the path"
        )
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the {source!r} shape has vocab_size={config.vocab_size}; "
            "use a tokenizer that fits or a larger shape"
        )
    if model_args.num_hidden_layers is not None:
        config.num_hidden_layers = model_args.num_hidden_layers
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    if causal_lm:
        return config
    config.num_labels = NUM_LABELS
    config.id2label = dict(ID2LABEL)
    config.label2id = {label: index for index, label in ID2LABEL.items()}
    return config


@contextlib.contextmanager
def _without_zero3_init() -> Iterator[None]:
    """Build a model with whole (unpartitioned) weights even while a ZeRO-3 config is active, then restore it."""
    from transformers.integrations import deepspeed as hf_deepspeed

    reference = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = reference


def build_random_model(model_args: ModelArguments, tokenizer: Any, seed: int, *, causal_lm: bool = False) -> Any:
    """A randomly initialised token-classification PRM (or causal LM) from `init_from_config`; the same seed gives
    the same weights."""
    set_seed(seed)
    config = build_model_config(model_args, tokenizer, causal_lm=causal_lm)
    if model_args.attn_implementation:
        config._attn_implementation = model_args.attn_implementation
    auto_class = AutoModelForCausalLM if causal_lm else AutoModelForTokenClassification
    return auto_class.from_config(
        config, dtype=_torch_dtype(model_args.torch_dtype), trust_remote_code=model_args.trust_remote_code
    )


def _load_model(path: str, model_args: ModelArguments, *, causal_lm: bool = False) -> Any:
    kwargs: dict[str, Any] = {
        "dtype": _torch_dtype(model_args.torch_dtype),
        "trust_remote_code": model_args.trust_remote_code,
    }
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    if causal_lm:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    classes = {"num_labels": NUM_LABELS, "id2label": dict(ID2LABEL),
               "label2id": {label: index for index, label in ID2LABEL.items()}}
    return AutoModelForTokenClassification.from_pretrained(path, **classes, **kwargs)


def resolve_local_base(model_name_or_path: str) -> str:
    """An absolute local path for the base model: a directory as is, a hub id via its cached snapshot."""
    path = Path(model_name_or_path)
    if path.exists():
        return str(path.resolve())
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model_name_or_path, local_files_only=True)
    except Exception as error:  # noqa: BLE001 - any failure means "not in the local cache"
        logger.warning("base model %r is not in the local hub cache (%s); metadata records the hub id, so loading "
                       "the adapter will need the hub or a copy of the base", model_name_or_path, error)
        return model_name_or_path


def build_model(
    model_args: ModelArguments, tokenizer: Any, training_args: TtcPRMConfig
) -> tuple[Any, str | None]:
    """The model to train (token classification, or a causal LM for the generative styles) and the base path
    recorded in the metadata.

    A random `init_from_config` model is built with `seed`. With LoRA it is first saved to `<output_dir>/base` and
    reloaded from there, so the adapter's base is a local directory and the checkpoint loads offline.
    """
    if training_args.prm_style in LIKELIHOOD_READING_STYLES:
        return _likelihood_reading_model(model_args, tokenizer, training_args)
    causal_lm = training_args.prm_style in JUDGEMENT_STYLES
    if model_args.model_name_or_path is not None:
        base = model_args.model_name_or_path
        if model_args.use_peft:
            base = resolve_local_base(base)
        return _load_model(model_args.model_name_or_path, model_args, causal_lm=causal_lm), base
    if not model_args.use_peft:
        return build_random_model(model_args, tokenizer, training_args.seed, causal_lm=causal_lm), None
    base_dir = save_random_start(model_args, tokenizer, training_args, BASE_SUBDIR, causal_lm=causal_lm)
    return _load_model(base_dir, model_args, causal_lm=causal_lm), base_dir


def save_random_start(model_args: ModelArguments, tokenizer: Any, training_args: TtcPRMConfig, subdir: str, *,
                      causal_lm: bool) -> str:
    """The random `init_from_config` model (seeded) saved whole by the main process to `<output_dir>/<subdir>`,
    unless already there (a resumed run), so every process loads it from one local directory; its path."""
    directory = (Path(training_args.output_dir) / subdir).resolve()
    if training_args.process_index == 0 and not (directory / "config.json").is_file():
        with _without_zero3_init():
            model = build_random_model(model_args, tokenizer, training_args.seed, causal_lm=causal_lm)
        model.save_pretrained(directory, safe_serialization=True)
        tokenizer.save_pretrained(directory)
        del model
    _wait_for_everyone()
    return str(directory)


LIKELIHOOD_READING_STYLES = (LIKELIHOOD_HEAD_STYLE, IMPLICIT_STYLE)
"""Styles that read the solution after the policy's prompt from a causal LM's token probabilities."""
REFERENCE_SUBDIR = "reference"
"""Where an implicit PRM grown from a random `init_from_config` model saves its reference, so it loads offline."""


def _likelihood_reading_model(model_args: ModelArguments, tokenizer: Any, training_args: TtcPRMConfig
                              ) -> tuple[Any, str | None]:
    """The likelihood-head or implicit module around its causal LM (LoRA adapters on it with use_peft), and the
    base recorded in the metadata."""
    style = training_args.prm_style
    if model_args.use_peft and model_args.model_name_or_path is None:
        raise ValueError(f"prm_style {style} with use_peft needs model_name_or_path (the LM the adapters extend)")
    if model_args.use_peft and style == LIKELIHOOD_HEAD_STYLE and training_args.freeze_backbone:
        raise ValueError("use_peft trains LoRA adapters of the LM, but freeze_backbone is true (the head alone needs "
                         "no adapters); set freeze_backbone false or use_peft false")
    full_implicit = style == IMPLICIT_STYLE and not model_args.use_peft
    start = model_args.model_name_or_path
    if start is None and full_implicit:
        # Saved first so the reference loads from it, in this run and in the scorer.
        start = save_random_start(model_args, tokenizer, training_args, REFERENCE_SUBDIR, causal_lm=True)
    if start is None:
        backbone = build_random_model(model_args, tokenizer, training_args.seed, causal_lm=True)
    else:
        backbone = _load_model(start, model_args, causal_lm=True)
    base = model_args.model_name_or_path
    if model_args.use_peft:
        from peft import get_peft_model

        base = resolve_local_base(base)
        backbone = get_peft_model(backbone, lora_config(model_args, "chat_plus_minus"))
        # The adapter config names the local base, so the scorer (and AutoPeftModel) loads it offline.
        for adapter in backbone.peft_config.values():
            adapter.base_model_name_or_path = base
    if style == LIKELIHOOD_HEAD_STYLE:
        return LikelihoodHeadModel(backbone, freeze_backbone=training_args.freeze_backbone), base
    # The reference is loaded again from the starting checkpoint rather than copied: under ZeRO-3 the loaded LM
    # holds only its own partition of the weights, and a copy of it would be empty. With LoRA the reference is the
    # same LM with its adapters turned off: no second copy of the weights.
    reference = _load_model(start, model_args, causal_lm=True) if full_implicit else None
    return ImplicitPRMModel(backbone, reference, beta=training_args.implicit_beta), base


def reference_model_path(model_args: ModelArguments, args: TtcPRMConfig) -> str | None:
    """The reference an implicit PRM's ttc_prm.json names: the starting checkpoint, resolved to a local path."""
    if args.prm_style != IMPLICIT_STYLE:
        return None
    if model_args.model_name_or_path is None:
        return str((Path(args.output_dir) / REFERENCE_SUBDIR).resolve())
    return resolve_local_base(model_args.model_name_or_path)


def _zero3_requested() -> bool:
    """Whether this run shards weights with DeepSpeed ZeRO-3 (an accelerate config or a TrainingArguments one)."""
    import os

    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    return is_deepspeed_zero3_enabled() or os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"


def _wait_for_everyone() -> None:
    from accelerate import PartialState

    PartialState().wait_for_everyone()


def lora_config(model_args: ModelArguments, prm_style: str = "token_classification") -> Any:
    """peft LoraConfig: for a token-classification PRM the head (`score`) is trained and saved with the adapter;
    a generative PRM keeps its LM head frozen and learns through the adapters."""
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.CAUSAL_LM if prm_style in JUDGEMENT_STYLES else TaskType.TOKEN_CLS,
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=list(model_args.lora_target_modules),
    )


# --------------------------------------------------------------------------------------------------------------------
# Data: float labels end to end
# --------------------------------------------------------------------------------------------------------------------

LABEL_FEATURES = datasets.Features(
    {"input_ids": datasets.Sequence(datasets.Value("int64")), "labels": datasets.Sequence(datasets.Value("float32"))}
)


def harden_labels(records: Sequence[StepLabels], threshold: float) -> list[StepLabels]:
    """Soft labels -> `p > threshold` (bools unchanged); warns once with how many labels changed kind."""
    changed = 0
    hardened = []
    for record in records:
        labels = []
        for label in record.labels:
            if isinstance(label, bool):
                labels.append(label)
            else:
                changed += 1
                labels.append(float(label) > threshold)
        hardened.append(StepLabels(record.prompt, list(record.completions), labels, meta=record.meta))
    if changed:
        logger.warning("soft_labels=false: %d float labels turned into bools with p > %s", changed, threshold)
    return hardened


def labelled_through_first_error(labels: Sequence[float], threshold: float) -> int:
    """How many leading steps keep their label when later ones are masked: through the first bad step (a label
    <= threshold; bools arrive as 0.0 / 1.0), all of them when none is bad."""
    first_bad = next((index for index, label in enumerate(labels) if float(label) <= threshold), None)
    return len(labels) if first_bad is None else first_bad + 1


def build_dataset(
    records: Sequence[StepLabels], tokenizer: Any, args: TtcPRMConfig, *, is_eval: bool = False,
    good_id: int | None = None,
) -> datasets.Dataset:
    """Tokenize stepwise records with float labels (TRL's own tokenize_row would apply int() to them), in the
    layout of `args.prm_style` (the generative styles need `good_id`, the good token's id).

    Runs `datasets.map` with `dataset_num_proc` workers, the main process first (as PRMTrainer does).
    """
    from accelerate import PartialState

    raw = datasets.Dataset.from_dict({
        "prompt": [record.prompt for record in records],
        "completions": [list(record.completions) for record in records],
        "labels": [[float(label) for label in record.labels] for record in records],
    })

    def tokenize(row: dict[str, Any]) -> dict[str, Any]:
        # Steps past `labelled` keep their text but carry no loss (mask_after_first_error).
        labelled = (labelled_through_first_error(row["labels"], args.hard_label_threshold)
                    if args.mask_after_first_error else len(row["labels"]))
        if args.prm_style == IMPLICIT_STYLE:
            example = layout_row(tokenizer, row["prompt"], row["completions"], None, system_prompt=SYSTEM_PROMPT,
                                 max_length=args.max_length)
            # One label per solution, its outcome (bools arrive as 0.0 / 1.0; load_records refused soft ones).
            return {"input_ids": example.input_ids, "step_index": example.step_index,
                    "labels": [float(all(label == 1.0 for label in row["labels"]))],
                    "truncated": max(example.step_index) + 1 < len(row["completions"])}
        if args.prm_style == LIKELIHOOD_HEAD_STYLE:
            example = layout_row(tokenizer, row["prompt"], row["completions"], row["labels"],
                                 system_prompt=SYSTEM_PROMPT, max_length=args.max_length)
            labels = [label if step < labelled and not (args.train_on_last_step_only and not is_eval
                                                         and step != len(row["labels"]) - 1) else float(IGNORE_INDEX)
                      for step, label in enumerate(example.step_labels)]
            return {"input_ids": example.input_ids, "step_index": example.step_index, "labels": labels,
                    "truncated": len(example.step_labels) < len(row["completions"])}
        tokens = _tokenize_token_labels(row)
        token_labels = list(tokens.labels)
        for position in tokens.step_positions[labelled:]:
            token_labels[position] = float(IGNORE_INDEX)
        return {"input_ids": tokens.input_ids, "labels": token_labels,
                "truncated": len(tokens.step_positions) < len(row["completions"])}

    def _tokenize_token_labels(row: dict[str, Any]) -> Any:
        if args.prm_style in JUDGEMENT_STYLES:
            return judgement_tokens(
                tokenizer, args.prm_style, row["prompt"], row["completions"], row["labels"],
                good_token=args.good_token, good_id=good_id, step_tag=args.step_tag, max_length=args.max_length,
                train_on_last_step_only=args.train_on_last_step_only and not is_eval,
            )
        return tokenize_steps(
            tokenizer,
            row["prompt"],
            row["completions"],
            row["labels"],
            separator=args.step_separator,
            max_length=args.max_length,
            max_completion_length=args.max_completion_length,
            train_on_last_step_only=args.train_on_last_step_only and not is_eval,
        )

    features = datasets.Features({**LABEL_FEATURES, "truncated": datasets.Value("bool")})
    if args.prm_style in LIKELIHOOD_READING_STYLES:
        features["step_index"] = datasets.Sequence(datasets.Value("int64"))
    with PartialState().main_process_first():
        dataset = raw.map(tokenize, remove_columns=raw.column_names, features=features,
                          num_proc=args.dataset_num_proc, desc="Tokenizing eval set" if is_eval else "Tokenizing")
    truncated = sum(dataset["truncated"])
    if truncated:
        logger.warning("%d of %d examples lost steps to max_length=%s / max_completion_length=%s",
                       truncated, len(records), args.max_length, args.max_completion_length)
    return dataset.remove_columns("truncated")


@dataclass
class StepLabelCollator:
    """Right-pads input_ids with the pad token and labels with -100, keeping labels float32."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = max(len(feature["input_ids"]) for feature in features)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(features), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), length), dtype=torch.long)
        labels = torch.full((len(features), length), float(IGNORE_INDEX), dtype=torch.float32)
        for row, feature in enumerate(features):
            size = len(feature["input_ids"])
            input_ids[row, :size] = torch.as_tensor(feature["input_ids"], dtype=torch.long)
            attention_mask[row, :size] = 1
            if "labels" in feature:
                labels[row, :size] = torch.as_tensor(feature["labels"], dtype=torch.float32)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "labels" in features[0]:
            batch["labels"] = labels
        return batch


# --------------------------------------------------------------------------------------------------------------------
# Loss, trainer, metrics
# --------------------------------------------------------------------------------------------------------------------


def soft_cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum over labelled tokens of CE against [1 - p, p] (logits index 1 = good), and how many tokens were labelled.

    logits: (batch, seq, 2); labels: (batch, seq) floats, -100 where there is no label.
    """
    mask = labels != IGNORE_INDEX
    count = int(mask.sum())
    if count == 0:
        # Every step was truncated away: a zero loss that still has a graph, so backward() works.
        return logits.sum() * 0.0, 0
    log_probs = torch.log_softmax(logits[mask].float(), dim=-1)
    target = labels[mask].float()
    return -(target * log_probs[:, POSITIVE_LABEL] + (1.0 - target) * log_probs[:, 1 - POSITIVE_LABEL]).sum(), count


def soft_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over labelled tokens of CE against [1 - p, p]; equals standard CE when every p is 0 or 1."""
    summed, count = soft_cross_entropy_sum(logits, labels)
    return summed / max(count, 1)


class SoftLabelPRMTrainer(PRMTrainer):
    """PRMTrainer fed pre-tokenized float labels, with a soft-target loss at the step positions.

    `judgement_ids` (good id, bad id) makes it train a generative PRM: the model is a causal LM and the two-way
    distribution is its (bad, good) logits at the labelled positions; None trains the 2-class token head.

    The loss of a micro-batch is its labelled steps' summed cross-entropy divided by `num_items_in_batch`, the
    labelled steps of the whole accumulated batch (all processes), as transformers' own model losses do: with
    gradient accumulation every step then weighs the same, whatever its micro-batch. Declaring
    `model_accepts_loss_kwargs` makes every Trainer version the pyproject admits count those items and not divide
    the loss again by the accumulation steps (4.56 decides that from this flag alone; from about 5.19 the default
    `loss_is_scaled_for_ga=None` defers to it too). Without a count (none passed) the loss is the micro-batch mean
    and the Trainer divides it.
    """

    def __init__(self, *args: Any, judgement_ids: tuple[int, int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.judgement_ids = judgement_ids
        self.model_accepts_loss_kwargs = True
        implicit = self._likelihood_reading_module()
        if isinstance(implicit, ImplicitPRMModel) and implicit.reference is not None and _zero3_requested():
            # The reference's weights are partitioned like the trained LM's; only a DeepSpeed engine can run it.
            from trl.models.utils import prepare_deepspeed

            implicit.place_reference(lambda reference: prepare_deepspeed(reference, self.accelerator))
        if judgement_ids is not None:
            import inspect

            from accelerate.utils import extract_model_from_parallel
            from peft import PeftModel

            inner = extract_model_from_parallel(self.model)
            inner = inner.get_base_model() if isinstance(inner, PeftModel) else inner
            self._can_select_logits = "logits_to_keep" in inspect.signature(inner.forward).parameters

    def _likelihood_reading_module(self) -> LikelihoodHeadModel | ImplicitPRMModel | None:
        """The model when it is one of the likelihood-reading styles' modules (saved in their own layout)."""
        from accelerate.utils import extract_model_from_parallel

        inner = extract_model_from_parallel(self.model)
        return inner if isinstance(inner, (LikelihoodHeadModel, ImplicitPRMModel)) else None

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        # A likelihood-head PRM is an LM plus three head tensors, an implicit PRM an LM beside its reference: every
        # checkpoint is written in the layout the scorer loads (the Trainer would write one state dict, which a
        # tied LM head cannot even be saved as).
        head_model = self._likelihood_reading_module()
        if head_model is None:
            return super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return None
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        # Under DeepSpeed `state_dict` holds the weights gathered from the engine (ZeRO-3 partitions made whole).
        head_model.save_checkpoint(output_dir, state_dict)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, Path(output_dir) / "training_args.bin")
        return None

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        head_model = self._likelihood_reading_module()
        if head_model is None:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        head_model.load_checkpoint(resume_from_checkpoint)
        return None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, D102
        labels = inputs["labels"]
        model_inputs = {key: value for key, value in inputs.items() if key != "labels"}
        if self.judgement_ids is None:
            outputs = model(**model_inputs)
            logits, step_labels = outputs["logits"], labels
        else:
            good_id, bad_id = self.judgement_ids
            logits, step_labels, columns = judgement_pair_logits(
                model, model_inputs, labels, good_id=good_id, bad_id=bad_id, can_select_logits=self._can_select_logits
            )
        summed, count = soft_cross_entropy_sum(logits, step_labels)
        if num_items_in_batch is None:
            loss = summed / max(count, 1)
        else:
            # A batch whose rows were all cut before their first label (max_length) counts no step: its loss is
            # 0, not 0/0 (a NaN that DeepSpeed answers by skipping the optimizer step).
            items = num_items_in_batch.clamp(min=1) if torch.is_tensor(num_items_in_batch) else max(num_items_in_batch, 1)
            loss = summed / items
            if getattr(self.args, "average_tokens_across_devices", False):
                # The count is summed over processes while DDP / DeepSpeed average the gradients over them.
                loss = loss * self.accelerator.num_processes
        if not return_outputs:
            return loss
        if self.judgement_ids is None:
            return loss, outputs
        # Evaluation metrics read (batch, seq, 2) logits aligned with the labels, as the token head gives them.
        full = logits.new_zeros((*labels.shape, 2))
        full[:, columns] = logits.to(full.dtype)
        return loss, {"logits": full}


def compute_step_metrics(eval_pred: Any) -> dict[str, float]:
    """Step accuracy (p(good) >= 0.5 vs label >= 0.5) and Brier score over labelled tokens."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    mask = labels != IGNORE_INDEX
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    p_good, target = probs[..., POSITIVE_LABEL][mask], labels[mask].astype(np.float64)
    return {
        "step_accuracy": float(np.mean((p_good >= 0.5) == (target >= 0.5))),
        "step_brier": float(np.mean((p_good - target) ** 2)),
    }


class MetadataCallback(TrainerCallback):
    """Writes the PRM metadata file into every checkpoint directory, so any checkpoint loads like the final one."""

    def __init__(self, metadata: PRMMetadata) -> None:
        self.metadata = metadata

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001, D102
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir():
                self.metadata.save(checkpoint)
        return control


# --------------------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PRMTrainResult:
    output_dir: Path
    global_step: int
    train_loss: float
    num_train_examples: int
    metadata: PRMMetadata


def label_source_name(data_args: DataArguments) -> str:
    if data_args.label_source:
        return data_args.label_source
    return f"{data_args.data_format}-{Path(data_args.train_files[0].rstrip('/')).stem}"


def load_records(data_args: DataArguments, args: TtcPRMConfig, tokenizer: Any = None
                 ) -> tuple[list[StepLabels], list[StepLabels] | None]:
    """Train and eval records (mixed by `train_weights`); for a generative style each file is checked against it
    first (its special tokens from `tokenizer`), so a row that cannot be laid out fails naming file and row."""
    options = {"neutral_as": data_args.neutral_as, "skip_invalid_rows": data_args.skip_invalid_rows}

    if data_args.data_format == "outcome" and args.prm_style != IMPLICIT_STYLE:
        # Every step of an outcome record carries its solution's label: a step trainer would learn a wrong
        # solution's right steps as wrong ones.
        raise PRMInputError(f"{data_args.train_files[0]}: data_format outcome has one label per solution (field "
                            f"'label'), but prm_style {args.prm_style} trains on a label per step; give step labels "
                            f"({', '.join(STEP_LABEL_FORMATS)}) or train prm_style implicit")

    def read(paths: Sequence[str], weights: Sequence[float] | None) -> list[StepLabels]:
        sources = [read_step_labels(path, data_args.data_format, **options) for path in paths]
        # Record i is row i of the file only for a stepwise file read without skipping rows.
        exact_rows = data_args.data_format == "stepwise" and not data_args.skip_invalid_rows
        if args.prm_style == IMPLICIT_STYLE:
            for path, source in zip(paths, sources):
                for index, record in enumerate(source, start=1):
                    outcome_label(record.labels, f"{path} row {index}" if exact_rows else f"{path} example {index}")
        if args.prm_style in JUDGEMENT_STYLES:
            reserved = list(getattr(tokenizer, "all_special_tokens", None) or [])
            for path, source in zip(paths, sources):
                check_texts_fit_style(source, path, args.prm_style, step_tag=args.step_tag, reserved=reserved,
                                      rows_are_exact=exact_rows)
        if weights is None:
            return [record for source in sources for record in source]
        return mix_step_labels(sources, weights, seed=args.seed)

    train = read(data_args.train_files, data_args.train_weights)
    train = train[: data_args.max_train_samples] if data_args.max_train_samples else train
    evaluation = None
    if data_args.eval_files:
        evaluation = read(data_args.eval_files, None)
        evaluation = evaluation[: data_args.max_eval_samples] if data_args.max_eval_samples else evaluation
    if not args.soft_labels:
        train = harden_labels(train, args.hard_label_threshold)
        evaluation = harden_labels(evaluation, args.hard_label_threshold) if evaluation else evaluation
    return train, evaluation


def resolve_resume(args: TtcPRMConfig) -> str | bool | None:
    """`--resume` -> the last checkpoint in output_dir (an error when there is none)."""
    if not args.resume:
        return args.resume_from_checkpoint
    last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    if last is None:
        raise FileNotFoundError(f"--resume: no checkpoint-* directory in output_dir={args.output_dir}; "
                                "run without --resume first (with save_steps) or fix output_dir")
    return last


def build_metadata(model_args: ModelArguments, data_args: DataArguments, args: TtcPRMConfig, base_model: str | None,
                   config_name: str | None, num_train_examples: int) -> PRMMetadata:
    train_config = {
        "config_name": config_name,
        "label_source": label_source_name(data_args),
        "data_format": data_args.data_format,
        "train_files": list(data_args.train_files),
        "train_weights": data_args.train_weights,
        "num_train_examples": num_train_examples,
        "soft_labels": args.soft_labels,
        "seed": args.seed,
        "max_length": args.max_length,
        "learning_rate": args.learning_rate,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "max_steps": args.max_steps,
        "num_train_epochs": args.num_train_epochs,
        "model_name_or_path": model_args.model_name_or_path,
        "init_from_config": model_args.init_from_config,
        "num_hidden_layers": model_args.num_hidden_layers,
        "use_peft": model_args.use_peft,
        "lora_r": model_args.lora_r if model_args.use_peft else None,
        "lora_target_modules": list(model_args.lora_target_modules) if model_args.use_peft else None,
        "prompt_format": {LIKELIHOOD_HEAD_STYLE: LIKELIHOOD_HEAD_PROMPT_FORMAT, IMPLICIT_STYLE: IMPLICIT_PROMPT_FORMAT,
                          **PROMPT_FORMATS}.get(args.prm_style, PROMPT_FORMAT),
        "mask_after_first_error": args.mask_after_first_error,
        **({"freeze_backbone": args.freeze_backbone} if args.prm_style == LIKELIHOOD_HEAD_STYLE else {}),
    }
    generative = args.prm_style in JUDGEMENT_STYLES
    return PRMMetadata(
        prm_style=args.prm_style,
        step_separator=STEP_SEPARATOR,
        base_model=base_model,
        is_peft_adapter=model_args.use_peft,
        positive_label=POSITIVE_LABEL,
        **({"good_token": args.good_token, "bad_token": args.bad_token} if generative else {}),
        step_tag=args.step_tag if args.prm_style == "step_tag" else None,
        # The likelihood head reads the solution after the policy's prompt, so the scorer must render the same.
        system_prompt=SYSTEM_PROMPT if args.prm_style in LIKELIHOOD_READING_STYLES else None,
        reference_model=reference_model_path(model_args, args),
        beta=args.implicit_beta if args.prm_style == IMPLICIT_STYLE else None,
        train_config=train_config,
    )


def train_prm(
    model_args: ModelArguments,
    data_args: DataArguments,
    args: TtcPRMConfig,
    config_name: str | None = None,
    *,
    callbacks: Sequence[TrainerCallback] = (),
    save_model: bool = True,
) -> PRMTrainResult:
    """Train a PRM of `args.prm_style` and save weights, tokenizer and `ttc_prm.json` into `args.output_dir`.

    The tokenizer and the label files are checked against the style before any model is built (PRMInputError).

    `callbacks` are added to the Trainer's (benchmarks time steps with one); `save_model=False` skips the final save
    (throughput runs on random weights, where gathering and writing 16 GB would only cost time).
    """
    resume = resolve_resume(args)
    if args.label_names is None:
        args.label_names = ["labels"]  # peft-wrapped models hide the label name from the Trainer
    tokenizer = load_tokenizer(model_args)
    source = model_args.tokenizer_name_or_path or model_args.model_name_or_path or "the built-in tiny tokenizer"
    judgement_ids = None
    if args.prm_style in JUDGEMENT_STYLES:
        judgement_ids = judgement_token_ids(tokenizer, args.prm_style, good_token=args.good_token,
                                            bad_token=args.bad_token, step_tag=args.step_tag,
                                            tokenizer_source=source)
    if args.prm_style in LIKELIHOOD_READING_STYLES and not getattr(tokenizer, "chat_template", None):
        raise PRMInputError(f"tokenizer {source} has no chat template; prm_style {args.prm_style} reads the solution "
                            "after the policy's chat prompt (train it from a policy/instruct checkpoint)")
    train_records, eval_records = load_records(data_args, args, tokenizer)
    logger.info("training on %d examples (%s)", len(train_records), label_source_name(data_args))
    # Seed before building: a head added to a loaded backbone is initialised here, before the Trainer seeds.
    set_seed(args.seed)
    model, base_model = build_model(model_args, tokenizer, args)
    metadata = build_metadata(model_args, data_args, args, base_model, config_name, len(train_records))
    good_id = judgement_ids[0] if judgement_ids else None
    trainer = SoftLabelPRMTrainer(
        model=model,
        args=args,
        data_collator=LikelihoodHeadCollator(tokenizer.pad_token_id) if args.prm_style in LIKELIHOOD_READING_STYLES
        else StepLabelCollator(tokenizer.pad_token_id),
        train_dataset=build_dataset(train_records, tokenizer, args, good_id=good_id),
        eval_dataset=build_dataset(eval_records, tokenizer, args, is_eval=True, good_id=good_id)
        if eval_records else None,
        processing_class=tokenizer,
        compute_metrics=compute_step_metrics,
        callbacks=[MetadataCallback(metadata), *callbacks],
        # The likelihood-reading modules carry their adapters already (`_likelihood_reading_model`).
        peft_config=lora_config(model_args, args.prm_style)
        if model_args.use_peft and args.prm_style not in LIKELIHOOD_READING_STYLES else None,
        judgement_ids=judgement_ids,
    )
    if model_args.use_peft and base_model is not None and args.prm_style not in LIKELIHOOD_READING_STYLES:
        # The adapter config then names the local base, so AutoPeftModel loads it offline.
        for peft_config in trainer.model.peft_config.values():
            peft_config.base_model_name_or_path = base_model
    result = trainer.train(resume_from_checkpoint=resume)
    if save_model:
        trainer.save_model(args.output_dir)
    if save_model and trainer.is_world_process_zero():
        metadata.save(args.output_dir)
        logger.info("saved PRM to %s (step %d, train loss %.4f)", args.output_dir, trainer.state.global_step,
                    result.training_loss)
    return PRMTrainResult(
        output_dir=Path(args.output_dir),
        global_step=trainer.state.global_step,
        train_loss=float(result.training_loss),
        num_train_examples=len(train_records),
        metadata=metadata,
    )
