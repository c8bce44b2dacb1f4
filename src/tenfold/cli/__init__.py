"""The ``tenfold`` command line (Typer + Rich): nouns and verbs over ``tenfold.sdk``.

Owns: argument parsing, human output and exit codes. Does not own: HTTP (the SDK) or server internals,
except ``serve``, which starts the server in-process.
"""
