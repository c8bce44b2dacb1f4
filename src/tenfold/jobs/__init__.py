"""Job submission, the database-backed queue and the worker that runs training subprocesses."""
