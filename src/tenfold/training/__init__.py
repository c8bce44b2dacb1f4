"""Training recipes: dataset validation (``data``), template-verified tokenization (``tokenize``), the
supervised LoRA recipe (``sft``), checkpoint folders (``checkpoints``) and the bundled demo task
(``demo_task``). Importing this package is cheap; torch is imported only by the recipe modules.
"""
