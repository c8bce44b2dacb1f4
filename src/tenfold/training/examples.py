"""The normalized training example and the names of the dataset formats it can come from.

Owns: ``Message``, ``Example`` (what every accepted line becomes, whatever its format), the format names
that a file's ``format`` reports (``Format``), which method trains each (``SFT_FORMATS``,
``PREFERENCE_FORMATS``) and how each is described to a person (``FORMAT_LABELS``, used in hints and in
400s about a file that does not fit a method). Does not own: recognizing a line (``tenfold.training.formats``)
or reading whole files (``tenfold.training.data``). No torch, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# The value of a fine-tune file's ``format``. The first three and "preference" are the names the server
# reported before more formats were accepted; the others name TRL's and OpenAI's formats.
Format = Literal[
    "messages",  # TRL conversational language modeling = OpenAI's chat format: {"messages": [...]}
    "text",  # TRL standard language modeling: {"text": "..."} (no chat template)
    "prompt_completion",  # TRL standard prompt-completion: {"prompt": "...", "completion": "..."}
    "conversational_prompt_completion",  # TRL conversational: {"prompt": [msgs], "completion": [assistant msg]}
    "preference",  # TRL standard preference, explicit prompt: {"prompt", "chosen": "...", "rejected": "..."}
    "conversational_preference",  # TRL conversational, explicit prompt: "prompt", "chosen", "rejected" lists
    "implicit_prompt_preference",  # TRL conversational, implicit prompt: "chosen"/"rejected" lists only
    "openai_preference",  # OpenAI's DPO format: "input", "preferred_output", "non_preferred_output"
]

SFT_FORMATS: frozenset[str] = frozenset({"messages", "text", "prompt_completion", "conversational_prompt_completion"})
PREFERENCE_FORMATS: frozenset[str] = frozenset({"preference", "conversational_preference",
                                                "implicit_prompt_preference", "openai_preference"})

FORMAT_LABELS: dict[str, str] = {
    "messages": "chat ('messages')",
    "text": "language modeling ('text')",
    "prompt_completion": "'prompt'/'completion' strings",
    "conversational_prompt_completion": "'prompt'/'completion' message lists",
    "preference": "preference pairs ('prompt'/'chosen'/'rejected' strings)",
    "conversational_preference": "preference pairs ('prompt'/'chosen'/'rejected' message lists)",
    "implicit_prompt_preference": "implicit-prompt preference pairs ('chosen'/'rejected' message lists)",
    "openai_preference": "OpenAI preference pairs ('input'/'preferred_output'/'non_preferred_output')",
}

# One line of each format, as the hints and docs show it.
FORMAT_EXAMPLES: dict[str, str] = {
    "messages": '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}',
    "text": '{"text": "The sky is blue."}',
    "prompt_completion": '{"prompt": "The sky is", "completion": " blue."}',
    "conversational_prompt_completion": '{"prompt": [{"role": "user", "content": "Sky color?"}], '
                                        '"completion": [{"role": "assistant", "content": "Blue."}]}',
    "preference": '{"prompt": "Sky color?", "chosen": "Blue.", "rejected": "Green."}',
    "conversational_preference": '{"prompt": [{"role": "user", "content": "Sky color?"}], "chosen": '
                                 '[{"role": "assistant", "content": "Blue."}], "rejected": [{"role": "assistant", '
                                 '"content": "Green."}]}',
    "implicit_prompt_preference": '{"chosen": [{"role": "user", "content": "Sky color?"}, {"role": "assistant", '
                                  '"content": "Blue."}], "rejected": [{"role": "user", "content": "Sky color?"}, '
                                  '{"role": "assistant", "content": "Green."}]}',
    "openai_preference": '{"input": {"messages": [{"role": "user", "content": "Sky color?"}]}, "preferred_output": '
                         '[{"role": "assistant", "content": "Blue."}], "non_preferred_output": [{"role": '
                         '"assistant", "content": "Green."}]}',
}


def method_for(fmt: str) -> str:
    """The method a file of format ``fmt`` trains with: ``dpo`` for preference pairs, else ``sft``."""
    return "dpo" if fmt in PREFERENCE_FORMATS else "sft"


@dataclass(frozen=True)
class Message:
    role: str  # system, user, assistant or tool
    content: str
    weight: int = 1  # only meaningful on assistant messages: 0 = do not train on this turn
    tool_calls: tuple[tuple[str, str], ...] = ()  # an assistant's calls: (function name, arguments JSON)
    tool_call_id: str | None = None  # a tool message: the call it answers

    def as_dict(self) -> dict[str, Any]:
        """The message as serving renders it (``tenfold.models.tool_format.render_chat``)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [{"id": f"call_{i}", "type": "function",
                                  "function": {"name": name, "arguments": arguments}}
                                 for i, (name, arguments) in enumerate(self.tool_calls)]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass(frozen=True)
class Example:
    line: int  # 1-based line in the file, for warnings
    messages: tuple[Message, ...]  # for preference pairs: the prompt conversation (no final assistant turn)
    weight: float = 1.0  # scales this example's loss
    format: Format = "messages"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    chosen: str | None = None  # preference pairs only: the preferred assistant reply
    rejected: str | None = None  # preference pairs only: the dispreferred assistant reply
    text: str | None = None  # the "text" format only: raw text, trained as is (``messages`` is empty)
    tools: tuple[dict[str, Any], ...] = ()  # OpenAI tool objects the conversation may call (``messages`` format)

    @property
    def is_preference(self) -> bool:
        return self.format in PREFERENCE_FORMATS
