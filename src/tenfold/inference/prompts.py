"""Prompts on the api side: OpenAI-style messages → token ids through the base model's chat template.

Owns: ``Prompter`` (one per base model: its tokenizer, chat template and grammar compiler), normalising message content
(a string or a list of text parts), rendering, and encoding without adding special tokens twice. The
engine receives token ids only, so an engine in another process (a replica, vLLM) needs no template.
Does not own: the wire schema of messages (``tenfold.types``) or detokenizing output (the engine).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from tenfold.errors import InvalidRequest
from tenfold.models import tool_format


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
                raise InvalidRequest(f"Only text content parts are supported, got a {kind!r} part.", param="messages")
            texts.append(part["text"])
        return "\n".join(texts)
    raise InvalidRequest(f"Message content must be a string or a list of text parts, got {type(content).__name__}.",
                         param="messages")


class Prompter:
    """The chat template and tokenizer of one base model folder."""

    def __init__(self, model_path: Path | str, *, tokenizer: Any = None) -> None:
        if tokenizer is None:
            from tenfold.models.registry import load_tokenizer

            tokenizer = load_tokenizer(model_path)
        self.tokenizer = tokenizer
        self.model_path = Path(model_path)
        self._grammars: Any = None
        self._grammars_lock = threading.Lock()

    def grammars(self) -> Any:
        """The grammar compiler for this tokenizer (``tenfold.engine.grammar.Grammars``), built on first use
        (about a second: call it off the event loop)."""
        with self._grammars_lock:
            if self._grammars is None:
                from tenfold.engine.grammar import Grammars

                try:
                    vocab = int(json.loads((self.model_path / "config.json").read_text())["vocab_size"])
                except (OSError, ValueError, KeyError):
                    vocab = len(self.tokenizer)
                self._grammars = Grammars(self.tokenizer, max(vocab, len(self.tokenizer)))
            return self._grammars

    def chat_prompt(self, messages: list[dict], *, tools: list[dict] | None = None,
                    add_generation_prompt: bool = True) -> list[int]:
        """Token ids of ``messages`` rendered with the chat template; ``tools`` (OpenAI tool objects), assistant
        ``tool_calls`` and ``tool`` messages as ``tenfold.models.tool_format`` writes them."""
        return self.encode(self.chat_text(messages, tools=tools, add_generation_prompt=add_generation_prompt))

    def chat_text(self, messages: list[dict], *, tools: list[dict] | None = None,
                  add_generation_prompt: bool = True) -> str:
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("messages must be a non-empty list.", param="messages")
        normalised = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise InvalidRequest(f"messages[{i}] must be an object with a string 'role'.", param="messages")
            m = {"role": message["role"], "content": message_text(message.get("content"))}
            if message.get("tool_calls"):
                m["tool_calls"] = message["tool_calls"]
            if message.get("tool_call_id"):
                m["tool_call_id"] = message["tool_call_id"]
            normalised.append(m)
        try:
            return tool_format.render_chat(self.tokenizer, normalised, tools,
                                           add_generation_prompt=add_generation_prompt)
        except tool_format.ToolFormatError as e:
            raise InvalidRequest(f"{e}.", param="messages") from None
        except Exception as exc:  # jinja raises on roles the template refuses
            raise InvalidRequest(f"The chat template rejected these messages: {exc}.", param="messages") from exc

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))
