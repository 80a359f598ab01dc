"""A local byte-level BPE tokenizer for ttc's tiny models: one token per digit, chat template, pad/eos/bos."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from data_prep.steps import FINAL_ANSWER_TEMPLATE, SYSTEM_PROMPT

BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|end|>"
"""Ends a chat turn and a generation (the policy stops here)."""
PAD_TOKEN = "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
VOCAB_SIZE = 512

# `{% generation %}` marks assistant text so TRL's SFT can train on completions only.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|end|>' }}{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def _training_corpus() -> list[str]:
    """Text the BPE merges are learned from: the synthetic world and the step-format prompts."""
    # Imported here: the synthetic world is only needed while building, not when loading a saved tokenizer.
    from data_prep.synthetic import generate_problems, gold_steps
    from data_prep.steps import join_steps

    corpus = [SYSTEM_PROMPT, FINAL_ANSWER_TEMPLATE]
    for problem in generate_problems("train", 200, seed=12345):
        corpus.append(problem.problem)
        corpus.append(join_steps(gold_steps(problem)))
    return corpus


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Build the tokenizer from scratch (deterministic; about a second, no network)."""
    tokenizer = Tokenizer(models.BPE())
    # Digits first, one per token, so the model sees place value the same way in every number.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    special_tokens = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, *ROLE_TOKENS]
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=list(ROLE_TOKENS),
        padding_side="left",
        model_max_length=1024,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_tiny_tokenizer(output_dir: str | Path) -> PreTrainedTokenizerFast:
    """Build and save; the directory then loads with `AutoTokenizer.from_pretrained`."""
    tokenizer = build_tiny_tokenizer()
    tokenizer.save_pretrained(str(output_dir))
    return tokenizer
