"""Pydantic wire schemas shared by the server and the SDK, with OpenAI's field names exactly."""
