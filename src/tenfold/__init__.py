"""tenfold: fine-tune LoRA adapters, deploy any checkpoint, serve thousands of them on one base model."""

__version__ = "0.1.0"
