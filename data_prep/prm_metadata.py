"""The metadata file a PRM checkpoint carries so the inference arm loads it with no extra flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from data_prep.json_records import read_json_record, write_json_record
from data_prep.steps import STEP_SEPARATOR

METADATA_FILENAME = "ttc_prm.json"

PRMStyle = Literal["token_classification", "chat_plus_minus", "step_tag", "likelihood_head", "implicit"]
"""(a) TRL-style token classification head, label on each step separator's last token;
(b) causal LM answering `+`/`-` after each step in a chat turn (RLHFlow);
(c) causal LM with a step-tag token whose next-token distribution over `+`/`-` is the score (Math-Shepherd);
(d) a causal LM's own token probabilities with a trained head over them (`LIKELIHOOD_HEAD_FILE`);
(e) an implicit PRM (Yuan et al. 2024): a causal LM trained on outcome labels against a frozen reference model; step
k's reward is beta times the sum over its tokens of log P_model - log P_reference, its score sigmoid(reward)."""

PRM_STYLES: tuple[str, ...] = ("token_classification", "chat_plus_minus", "step_tag", "likelihood_head", "implicit")

LIKELIHOOD_HEAD_FILE = "likelihood_head.safetensors"
"""The head of a `likelihood_head` PRM, beside its causal LM's weights. Tensors: `likelihood_weight` (1,),
`hidden_weight` (hidden_size,), `bias` (1,). With the solution laid out by `data_prep.judgement.likelihood_layout`,
step k's logit is likelihood_weight * min over the step's tokens of log P(token | before) + hidden_weight . h + bias,
h the LM's last hidden state (after its final norm) at the step's last token; the score is sigmoid(logit).
At likelihood_weight 1, hidden_weight 0, bias 0 the score is a monotone map of the untrained likelihood read-out."""
LIKELIHOOD_HEAD_TENSORS: tuple[str, ...] = ("likelihood_weight", "hidden_weight", "bias")


@dataclass(frozen=True)
class PRMMetadata:
    prm_style: PRMStyle
    step_separator: str = STEP_SEPARATOR
    base_model: str | None = None
    """Path or hub id of the model the PRM was fine-tuned from (for LoRA: the adapter's base)."""
    is_peft_adapter: bool = False
    """True when the checkpoint directory holds a peft adapter rather than full weights."""
    positive_label: int = 1
    """Token-classification class index that means 'step is good'."""
    good_token: str = "+"
    bad_token: str = "-"
    step_tag: str | None = None
    """Step-tag PRMs only: the tag placed after each step."""
    system_prompt: str | None = None
    """System prompt used to build training prompts, if any (the likelihood-reading styles render it again)."""
    reference_model: str | None = None
    """Implicit PRMs only: the frozen reference model (a local path) whose log-probabilities the rewards subtract."""
    beta: float | None = None
    """Implicit PRMs only: the reward scale beta."""
    train_config: dict | None = None
    """Key settings of the training run (label kind, dataset, seed)."""

    def __post_init__(self) -> None:
        if self.prm_style not in PRM_STYLES:
            raise ValueError(f"prm_style must be one of {PRM_STYLES}, got {self.prm_style!r}")
        if not self.step_separator:
            raise ValueError("step_separator is empty")
        if self.prm_style == "step_tag" and not self.step_tag:
            raise ValueError("prm_style 'step_tag' needs step_tag")
        if self.prm_style == "implicit" and (not self.reference_model or not self.beta or self.beta <= 0):
            raise ValueError("prm_style 'implicit' needs reference_model and a positive beta")

    def save(self, checkpoint_dir: str | Path) -> Path:
        return write_json_record(self, Path(checkpoint_dir) / METADATA_FILENAME)

    @classmethod
    def load(cls, checkpoint_dir: str | Path) -> "PRMMetadata":
        """Read the metadata file; a missing or malformed file raises naming the path."""
        return read_json_record(
            cls, Path(checkpoint_dir) / METADATA_FILENAME,
            missing=f"{checkpoint_dir} is not a PRM written by training/train_prm.py; "
            "for a public PRM set prm_style explicitly in the config",
        )
