"""Prefix cache of the simple engine: the KV of finished requests, reused by later prompts that start with
the same tokens (a shared system prompt, the growing context of a multi-turn chat).

Owns: block hashing, lookup and LRU eviction under a token budget. Prompts are cut into blocks of
``block_size`` tokens; block hashes form a chain whose seed is the namespace (the adapter's content digest
and the organization, both set by the server, never by the client), so two adapters or two organizations
never share KV. A hash hit is confirmed by comparing tokens. At most ``len(prompt) - 1`` tokens are reused,
because the last prompt token must run to produce the next token's logits. Holds plain tensors: the
caller turns them into and out of its cache objects (``simple.py``), so the paged engine can replace this.
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from dataclasses import dataclass

import torch

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values shaped [1, heads, tokens, dim]


@dataclass
class _Entry:
    tokens: tuple[int, ...]
    kv: KV
    hashes: list[bytes]


class PrefixCache:
    def __init__(self, *, block_size: int = 16, max_tokens: int = 4096) -> None:
        if block_size < 1 or max_tokens < 0:
            raise ValueError("block_size must be >= 1 and max_tokens >= 0")
        self.block_size = block_size
        self.max_tokens = max_tokens
        self._entries: OrderedDict[int, _Entry] = OrderedDict()  # LRU order, oldest first
        self._index: dict[bytes, tuple[int, int]] = {}  # block-chain hash → (entry id, tokens covered)
        self._next_id = 0
        self._tokens = 0

    @property
    def cached_tokens(self) -> int:
        return self._tokens

    def _chain(self, namespace: str, tokens: tuple[int, ...] | list[int], n_blocks: int) -> list[bytes]:
        h = hashlib.blake2b(namespace.encode(), digest_size=16).digest()
        out = []
        b = self.block_size
        for i in range(n_blocks):
            block = tokens[i * b:(i + 1) * b]
            h = hashlib.blake2b(h + struct.pack(f"<{len(block)}q", *block), digest_size=16).digest()
            out.append(h)
        return out

    def lookup(self, namespace: str, prompt: list[int]) -> tuple[int, KV | None]:
        """The longest cached prefix of ``prompt`` (≤ len(prompt) - 1, whole blocks): (length, KV views)."""
        usable_blocks = (len(prompt) - 1) // self.block_size
        if usable_blocks <= 0 or not self._entries:
            return 0, None
        hashes = self._chain(namespace, prompt, usable_blocks)
        for i in range(len(hashes) - 1, -1, -1):
            found = self._index.get(hashes[i])
            if found is None:
                continue
            entry_id, length = found
            entry = self._entries.get(entry_id)
            if entry is None or list(entry.tokens[:length]) != prompt[:length]:
                continue  # evicted or a hash collision: confirmed by tokens, never trusted blindly
            self._entries.move_to_end(entry_id)
            return length, [(k[:, :, :length], v[:, :, :length]) for k, v in entry.kv]
        return 0, None

    def store(self, namespace: str, tokens: list[int], kv: KV) -> None:
        """Remember the KV of ``tokens`` (whole blocks only). ``kv`` must cover at least those tokens."""
        n_blocks = len(tokens) // self.block_size
        length = n_blocks * self.block_size
        if n_blocks == 0 or length > self.max_tokens:
            return
        key = tuple(tokens[:length])
        hashes = self._chain(namespace, key, n_blocks)
        existing = self._index.get(hashes[-1])
        if existing is not None and existing[1] == length and existing[0] in self._entries:
            self._entries.move_to_end(existing[0])  # already cached (the same conversation prefix)
            return
        entry = _Entry(tokens=key, kv=[(k[:, :, :length].clone(), v[:, :, :length].clone()) for k, v in kv],
                       hashes=hashes)
        entry_id = self._next_id
        self._next_id += 1
        self._entries[entry_id] = entry
        self._tokens += length
        for i, h in enumerate(hashes):
            self._index[h] = (entry_id, (i + 1) * self.block_size)
        while self._tokens > self.max_tokens and self._entries:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        entry_id, entry = self._entries.popitem(last=False)
        self._tokens -= len(entry.tokens)
        for h in entry.hashes:
            if self._index.get(h, (None,))[0] == entry_id:
                del self._index[h]
