"""The file object of ``/v1/files`` (OpenAI's shape plus what the server counted on upload).

Owns: ``FileObject`` and the closed sets of purposes and data formats. Does not own: validation of the
file's lines (the server's ``tenfold.training.data`` and ``tenfold.batch.validate``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tenfold.types.common import ResponseModel

FilePurpose = Literal["fine-tune", "batch", "batch_output", "batch_error"]
FileFormat = Literal["messages", "text", "prompt_completion", "conversational_prompt_completion", "preference",
                     "conversational_preference", "implicit_prompt_preference", "openai_preference", "batch"]


class FileObject(ResponseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: FilePurpose = Field(description="fine-tune or batch when uploaded; batch_output and batch_error "
                                             "for the files a batch writes")
    status: Literal["processed"] = "processed"
    status_details: str | None = None
    n_examples: int = Field(description="training examples, or requests of a batch file")
    format: FileFormat
    n_tokens: int | None = Field(default=None, description="tokens of a fine-tune file as training tokenizes "
                                                           "it, with the tokenizer named in `tokenizer`")
    max_example_tokens: int | None = None
    tokenizer: str | None = None


__all__ = ["FileObject", "FilePurpose", "FileFormat"]
