"""Adapters that did not come from a job here: imported PEFT LoRA folders (``imports``)."""
