"""The tiny tokenizer: digits one per token, a chat template, and loading like a hub tokenizer."""

from transformers import AutoTokenizer

from data_prep.steps import build_messages, join_steps
from data_prep.synthetic import generate_problems, gold_steps
from data_prep.tokenizer import EOS_TOKEN, build_tiny_tokenizer


def test_every_digit_is_its_own_token():
    tokenizer = build_tiny_tokenizer()
    pieces = [tokenizer.decode([i]) for i in tokenizer("12345 + 907 = 13252", add_special_tokens=False).input_ids]
    digit_pieces = [p for p in pieces if any(c.isdigit() for c in p)]
    assert digit_pieces == list("12345907" "13252")


def test_round_trip_and_chat_template(tmp_path):
    tokenizer = build_tiny_tokenizer()
    problem = generate_problems("test", 1, seed=0, levels=(5,))[0]
    messages = build_messages(problem.problem) + [{"role": "assistant", "content": join_steps(gold_steps(problem))}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text.startswith("<|bos|><|system|>\n")
    assert text.endswith(f"{EOS_TOKEN}\n")
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|assistant|>\n")

    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.apply_chat_template(messages, tokenize=False) == text
    assert (loaded.pad_token, loaded.eos_token, loaded.bos_token) == ("<|pad|>", EOS_TOKEN, "<|bos|>")
    assert loaded.pad_token_id != loaded.eos_token_id


def test_any_text_tokenizes_without_unknowns():
    tokenizer = build_tiny_tokenizer()
    text = "Найти $\\frac{\\pi}{2}$ ки ∑ 😀"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text


def test_build_is_deterministic():
    assert build_tiny_tokenizer().get_vocab() == build_tiny_tokenizer().get_vocab()
