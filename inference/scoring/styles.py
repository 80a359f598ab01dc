"""The PRM style registry: each `prm_style` name -> the checkpoints it reads, the options it takes, how it loads.

`load_scorer` and the configs' `prm_style` read this one table; a new style is a scorer module in
`inference/scoring/` plus one `STYLES` entry here (with its load function). Scorer modules are imported only when
their style loads, so reading the registry imports neither torch nor transformers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.prm_metadata import METADATA_FILENAME, PRMMetadata
from inference.types import PRMScorer

STYLE_OPTIONS = ("step_tag", "good_token", "bad_token", "prefix_cache_bytes")
"""The `load_scorer` options some styles read; each style names the ones it takes, the rest are refused."""

CAUSAL_LM_ARCHITECTURES = ("ForCausalLM", "LMHeadModel")


@dataclass(frozen=True)
class StyleRequest:
    """What a style's load function gets: a checked checkpoint directory and the resolved settings."""

    directory: Path
    metadata: PRMMetadata | None
    """The checkpoint's ttc_prm.json (None for a public checkpoint)."""
    device: Any
    """torch.device"""
    dtype: Any
    """torch.dtype"""
    max_tokens_per_batch: int
    trust_remote_code: bool
    options: dict[str, Any] = field(default_factory=dict)
    """The style's own options that were given (never None values)."""

    @property
    def scorer_options(self) -> dict[str, Any]:
        """The keyword options every `BatchedPRMScorer` takes."""
        return {"path": str(self.directory), "device": self.device, "max_tokens_per_batch": self.max_tokens_per_batch}


@dataclass(frozen=True)
class PRMStyleSpec:
    """Everything the rest of the code needs to know about one PRM style."""

    summary: str
    """The kind of checkpoint the style reads, as a noun phrase (for messages and docs)."""
    architectures: tuple[str, ...]
    """config.json `architectures` this style reads, matched as name endings (`ForCausalLM` fits LlamaForCausalLM)."""
    load: Callable[[StyleRequest], PRMScorer]
    options: tuple[str, ...] = ()
    """The `STYLE_OPTIONS` this style reads; giving any other is an error."""
    trained_by_ttc: bool = False
    """train_prm.py writes checkpoints of this style (its name is in data_prep.prm_metadata.PRM_STYLES)."""
    reads_plain_lm: bool = False
    """Reads a plain causal LM with no trained judgement: a policy checkpoint fits it, a trained PRM does not."""

    def fits(self, architecture: str) -> bool:
        return architecture.endswith(self.architectures)


# --------------------------------------------------------------------------- load functions, one per style


def resolve_option(name: str, explicit: Any, from_metadata: Any, default: Any, metadata: PRMMetadata | None) -> Any:
    """A config's option, else the checkpoint's ttc_prm.json, else the default; a config contradicting the
    metadata is an error."""
    if explicit is not None and metadata is not None and explicit != from_metadata:
        raise ValueError(
            f"{name}={explicit!r} contradicts {name}={from_metadata!r} in the checkpoint's {METADATA_FILENAME}; "
            f"drop {name} from the config"
        )
    if explicit is not None:
        return explicit
    return from_metadata if metadata is not None else default


def _causal_lm(request: StyleRequest) -> tuple[Any, Any]:
    from inference.scoring.checkpoint import load_auto_model, load_tokenizer

    metadata = request.metadata
    base_model = metadata.base_model if metadata is not None and metadata.is_peft_adapter else None
    model = load_auto_model(request.directory, "AutoModelForCausalLM", metadata, request.dtype,
                            request.trust_remote_code)
    return model, load_tokenizer(request.directory, base_model, request.trust_remote_code)


def _judgement_tokens(request: StyleRequest) -> dict[str, str]:
    metadata = request.metadata
    return {
        "good_token": resolve_option("good_token", request.options.get("good_token"),
                                     metadata.good_token if metadata else None, "+", metadata),
        "bad_token": resolve_option("bad_token", request.options.get("bad_token"),
                                    metadata.bad_token if metadata else None, "-", metadata),
    }


def load_token_classification(request: StyleRequest) -> PRMScorer:
    from inference.scoring.checkpoint import load_auto_model, load_tokenizer
    from inference.scoring.token_classification import TokenClassificationScorer

    metadata = request.metadata
    base_model = metadata.base_model if metadata is not None and metadata.is_peft_adapter else None
    model = load_auto_model(request.directory, "AutoModelForTokenClassification", metadata, request.dtype,
                            request.trust_remote_code)
    tokenizer = load_tokenizer(request.directory, base_model, request.trust_remote_code)
    return TokenClassificationScorer(
        model, tokenizer,
        step_separator=metadata.step_separator if metadata else PRMMetadata.step_separator,
        positive_label=metadata.positive_label if metadata else PRMMetadata.positive_label,
        **_prefix_cache_option(request),
        **request.scorer_options,
    )


def load_chat_plus_minus(request: StyleRequest) -> PRMScorer:
    from inference.scoring.chat_plus_minus import ChatPlusMinusScorer

    tokens = _judgement_tokens(request)
    model, tokenizer = _causal_lm(request)
    return ChatPlusMinusScorer(model, tokenizer, **tokens, **_prefix_cache_option(request), **request.scorer_options)


def load_step_tag(request: StyleRequest) -> PRMScorer:
    from data_prep.labels import MATH_SHEPHERD_STEP_TAG
    from inference.scoring.step_tag import StepTagScorer

    metadata = request.metadata
    tag = resolve_option("step_tag", request.options.get("step_tag"), metadata.step_tag if metadata else None,
                         MATH_SHEPHERD_STEP_TAG, metadata)
    tokens = _judgement_tokens(request)
    model, tokenizer = _causal_lm(request)
    return StepTagScorer(model, tokenizer, step_tag=tag, **tokens, **_prefix_cache_option(request),
                         **request.scorer_options)


def _prefix_cache_option(request: StyleRequest) -> dict[str, Any]:
    cache = request.options.get("prefix_cache_bytes")
    return {} if cache is None else {"prefix_cache_bytes": cache}


def load_likelihood(request: StyleRequest) -> PRMScorer:
    from inference.scoring.likelihood import LikelihoodScorer

    model, tokenizer = _causal_lm(request)
    return LikelihoodScorer(model, tokenizer, **_prefix_cache_option(request), **request.scorer_options)


def load_likelihood_head(request: StyleRequest) -> PRMScorer:
    from inference.scoring.likelihood_head import LikelihoodHeadScorer, load_head

    model, tokenizer = _causal_lm(request)
    metadata = request.metadata
    return LikelihoodHeadScorer(model, tokenizer, head=load_head(request.directory, model.config.hidden_size),
                                system_prompt=metadata.system_prompt if metadata else None,
                                **_prefix_cache_option(request), **request.scorer_options)


def implicit_reference(directory: Path, metadata: PRMMetadata | None) -> Path:
    """The reference model directory of an implicit PRM (its ttc_prm.json's `reference_model`), checked: both
    backends subtract that model's log-probabilities, so a missing or wrong one is refused before weights load."""
    from data_prep.checkpoints import architectures, require_safetensors

    if metadata is None or not metadata.reference_model or not metadata.beta:
        raise ValueError(f"{directory}: an implicit PRM needs reference_model and beta in its "
                         f"{METADATA_FILENAME} (written by training/train_prm.py)")
    reference_dir = Path(metadata.reference_model)
    if not (reference_dir / "config.json").is_file():
        raise FileNotFoundError(f"{directory}/{METADATA_FILENAME}: reference_model {reference_dir} is not a "
                                "checkpoint directory; the implicit PRM's rewards subtract its log-probabilities")
    check_architecture(reference_dir, "implicit", architectures(reference_dir))
    require_safetensors(reference_dir, f"{directory}/{METADATA_FILENAME} reference_model")
    return reference_dir


def load_implicit(request: StyleRequest) -> PRMScorer:
    from inference.scoring.checkpoint import load_auto_model
    from inference.scoring.implicit import ImplicitPRMScorer

    metadata = request.metadata
    reference_dir = implicit_reference(request.directory, metadata)
    model, tokenizer = _causal_lm(request)
    reference = load_auto_model(reference_dir, "AutoModelForCausalLM", None, request.dtype, request.trust_remote_code)
    return ImplicitPRMScorer(model, tokenizer, reference=reference, beta=metadata.beta,
                             system_prompt=metadata.system_prompt, **_prefix_cache_option(request),
                             **request.scorer_options)


def load_qwen_prm(request: StyleRequest) -> PRMScorer:
    from inference.scoring.checkpoint import load_tokenizer
    from inference.scoring.qwen_prm import QwenPRMScorer, load_qwen_prm_model, step_token_id

    # The tokenizer is checked first: a wrong one is refused before gigabytes of weights load.
    tokenizer = load_tokenizer(request.directory, None, request.trust_remote_code)
    step_token_id(tokenizer, str(request.directory))
    model = load_qwen_prm_model(request.directory, request.dtype)
    return QwenPRMScorer(model, tokenizer, **request.scorer_options)


def load_skywork_prm(request: StyleRequest) -> PRMScorer:
    from inference.scoring.checkpoint import load_tokenizer
    from inference.scoring.skywork_prm import SkyworkPRMScorer, check_skywork_tokenizer, load_skywork_prm_model

    tokenizer = load_tokenizer(request.directory, None, request.trust_remote_code)
    check_skywork_tokenizer(tokenizer, str(request.directory))
    model = load_skywork_prm_model(request.directory, request.dtype)
    return SkyworkPRMScorer(model, tokenizer, **request.scorer_options)


# --------------------------------------------------------------------------- the registry

STYLES: dict[str, PRMStyleSpec] = {
    "token_classification": PRMStyleSpec(
        summary="a token-classification PRM (ttc/TRL: a class score at each step separator)",
        architectures=("ForTokenClassification",),
        load=load_token_classification, options=("prefix_cache_bytes",), trained_by_ttc=True,
    ),
    "chat_plus_minus": PRMStyleSpec(
        summary="a +/- chat PRM (RLHFlow: a causal LM answering each step's user turn with + or -)",
        architectures=CAUSAL_LM_ARCHITECTURES,
        load=load_chat_plus_minus, options=("good_token", "bad_token", "prefix_cache_bytes"), trained_by_ttc=True,
    ),
    "step_tag": PRMStyleSpec(
        summary="a step-tag PRM (Math-Shepherd: a causal LM read at a tag after each step)",
        architectures=CAUSAL_LM_ARCHITECTURES,
        load=load_step_tag, options=("step_tag", "good_token", "bad_token", "prefix_cache_bytes"),
        trained_by_ttc=True,
    ),
    "likelihood_head": PRMStyleSpec(
        summary="a likelihood-head PRM (a causal LM's own token probabilities with a head trained by train_prm.py)",
        architectures=CAUSAL_LM_ARCHITECTURES,
        load=load_likelihood_head, options=("prefix_cache_bytes",), trained_by_ttc=True,
    ),
    "implicit": PRMStyleSpec(
        summary="an implicit PRM (Yuan et al. 2024: a causal LM trained on outcomes against a frozen reference)",
        architectures=CAUSAL_LM_ARCHITECTURES,
        load=load_implicit, options=("prefix_cache_bytes",), trained_by_ttc=True,
    ),
    "lm_likelihood": PRMStyleSpec(
        summary="a plain causal LM (its own token probabilities as verifier, no trained head)",
        architectures=CAUSAL_LM_ARCHITECTURES,
        load=load_likelihood, options=("prefix_cache_bytes",), reads_plain_lm=True,
    ),
    "qwen_prm": PRMStyleSpec(
        summary="Qwen2.5-Math-PRM (a two-class head read at each <extra_0>)",
        architectures=("Qwen2ForProcessRewardModel",),
        load=load_qwen_prm,
    ),
    "skywork_prm": PRMStyleSpec(
        summary="Skywork-o1-Open-PRM (a value head read at the newline after each step)",
        architectures=("Qwen2ForPrmModel",),
        load=load_skywork_prm,
    ),
}
"""Every `prm_style`, in the order messages and `--help` list them."""

STYLE_NAMES: tuple[str, ...] = tuple(STYLES)


def styles_reading(architectures: list[str]) -> list[str]:
    """Names of the styles whose checkpoints declare one of `architectures`."""
    return [name for name, spec in STYLES.items() if any(spec.fits(a) for a in architectures)]


def check_architecture(directory: Path, name: str, architectures: list[str]) -> None:
    """Refuse a checkpoint whose declared class does not fit the style (it would attach a random head, or read an
    output the model does not have), naming the styles that do fit it."""
    spec = STYLES[name]
    if any(spec.fits(architecture) for architecture in architectures):
        return
    fitting = [style for style in styles_reading(architectures) if not STYLES[style].reads_plain_lm] or \
        styles_reading(architectures)
    hint = (f"use prm_style {' or '.join(repr(style) for style in fitting)} for it" if fitting
            else "no ttc PRM style reads this architecture")
    raise ValueError(
        f"{directory} is a {', '.join(architectures)} checkpoint, not {spec.summary}: prm_style {name!r} reads "
        f"*{' / *'.join(spec.architectures)} checkpoints, and another would get a random head or a wrong reading; "
        f"{hint}"
    )
