"""Prompts on the api side: the base model's chat template renders messages (string or text-part content)
into token ids exactly as the template says, with no special token added twice; other parts are refused."""

from __future__ import annotations

import pytest

from tenfold.errors import InvalidRequest
from tenfold.inference.prompts import Prompter
from tenfold.models.registry import resolve_base_model

TINY = "tiny-random-llama"


def test_chat_prompt_uses_template_and_text_parts(model_cache):
    prompter = Prompter(resolve_base_model(TINY, models_dir=model_cache))
    plain = prompter.chat_prompt([{"role": "user", "content": "hi there"}])
    parts = prompter.chat_prompt([{"role": "user", "content": [{"type": "text", "text": "hi there"}]}])
    with pytest.raises(InvalidRequest, match="text content parts") as info:
        prompter.chat_prompt([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])
    assert info.value.param == "messages"
    tail = prompter.encode("<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n")
    assert plain == parts
    assert plain[0] == 1  # <|im_start|> once, no extra BOS
    assert plain[-len(tail):] == tail
    with pytest.raises(InvalidRequest, match="non-empty"):
        prompter.chat_prompt([])
