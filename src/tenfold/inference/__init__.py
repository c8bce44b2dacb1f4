"""The inference request path shared by the HTTP routes and the batch runner: a validated request body →
engine requests (``requests``) → an OpenAI response or SSE chunks (``responses``, ``streams``), metered
exactly once; ``prompts`` renders chat on the api side and ``routing`` picks the engine that serves a route.
"""
