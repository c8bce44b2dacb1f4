"""Chat prompts: OpenAI-style messages → token ids through the base model's chat template.

Owns: normalising message content (string or list of text parts), rendering the template, encoding
without adding special tokens twice, and the set of end-of-sequence token ids. Does not own: the
wire schema of messages (``tenfold.types``).
"""

from __future__ import annotations

from typing import Any

from tenfold.engine.types import EngineError

# End-of-turn tokens of common chat templates; each one counts as EOS when the vocabulary has it.
END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "</s>")


def message_text(content: Any) -> str:
    """The text of a message's ``content``: a string, ``None`` or a list of ``{"type": "text"}`` parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise EngineError(f"only text content parts are supported, got a {kind!r} part")
            texts.append(part["text"])
        return "\n".join(texts)
    raise EngineError(f"message content must be a string or a list of text parts, got {type(content).__name__}")


def render_chat(tokenizer: Any, messages: list[dict], *, add_generation_prompt: bool = True) -> list[int]:
    """Token ids of ``messages`` rendered with the tokenizer's chat template."""
    if not isinstance(messages, list) or not messages:
        raise EngineError("messages must be a non-empty list")
    normalised = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise EngineError(f"messages[{i}] must be an object with a string 'role'")
        normalised.append({"role": message["role"], "content": message_text(message.get("content"))})
    try:
        text = tokenizer.apply_chat_template(normalised, tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as exc:  # jinja raises on roles the template refuses
        raise EngineError(f"the chat template rejected these messages: {exc}") from exc
    return list(tokenizer.encode(text, add_special_tokens=False))


def eos_token_ids(tokenizer: Any, generation_config: Any) -> set[int]:
    """Token ids that end generation with finish reason ``stop``."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    configured = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    if isinstance(configured, int):
        ids.add(configured)
    elif isinstance(configured, (list, tuple)):
        ids.update(int(i) for i in configured)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in END_TOKENS if token in vocab)
    return ids
