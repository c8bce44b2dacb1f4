"""The OpenAI Batch API: input-file validation (``validate``), the batch lifecycle (``service``) and the
runner that feeds lines to the engine at batch priority (``runner``)."""
