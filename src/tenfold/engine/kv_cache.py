"""Paged KV block accounting with automatic prefix caching (no torch: the tensors live in ``runner``).

Owns: which physical blocks each sequence holds (its block table), reference counts, the prefix cache
and its LRU eviction. A full block is registered under a hash of (previous block's hash, its tokens);
the chain's seed is the sequence's cache namespace (adapter content digest + organization, set by the
server). A lookup is confirmed by comparing the block's tokens *and* its parent block, so a hash
collision can never serve another prefix's KV. Blocks nobody references stay cached until a new
allocation needs them (least recently used first).

Does not own: deciding who runs (``scheduler``) or the KV tensors.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from tenfold.engine.sequence import Sequence


@dataclass
class Block:
    id: int
    ref: int = 0
    hash: int | None = None  # set once the block is full and registered in the prefix cache
    tokens: tuple[int, ...] = ()
    parent: int = -1  # block id of the previous block in the chain (-1: first block)
    namespace: str = ""


def namespace_seed(namespace: str) -> int:
    return int.from_bytes(hashlib.sha256(namespace.encode()).digest()[:8], "little")


def block_hash(parent_hash: int, tokens: tuple[int, ...]) -> int:
    return hash((parent_hash, tokens))


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, *, enable_caching: bool = True) -> None:
        if num_blocks < 2 or block_size < 1:
            raise ValueError(f"need at least 2 KV blocks of >= 1 token, got {num_blocks} x {block_size}")
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.enable_caching = enable_caching  # always on when serving; off only for benchmark comparisons
        # Block 0 is reserved as padding for batched block tables; it is never handed out.
        self.blocks = [Block(i) for i in range(num_blocks)]
        self._free: list[int] = list(range(num_blocks - 1, 0, -1))
        self._cached: dict[int, int] = {}  # hash -> block id
        self._evictable: OrderedDict[int, None] = OrderedDict()  # cached blocks with ref 0, LRU first
        self.hit_tokens_total = 0
        self.queried_tokens_total = 0

    # ---- capacity ---------------------------------------------------------------------------
    @property
    def usable_blocks(self) -> int:
        return self.num_blocks - 1

    def num_available(self) -> int:
        return len(self._free) + len(self._evictable)

    def num_used(self) -> int:
        return self.usable_blocks - self.num_available()

    def blocks_needed(self, seq: Sequence, num_tokens: int) -> int:
        total = seq.num_computed + num_tokens
        return max(0, -(-total // self.block_size) - len(seq.block_table))

    # ---- prefix cache -----------------------------------------------------------------------
    def match_prefix(self, seq: Sequence) -> int:
        """Attach cached blocks for the longest cached prefix of ``seq``'s tokens; return tokens covered.

        At least one token is always left to compute (its logits start generation), so a fully cached
        prompt gives back its last block.
        """
        if seq.block_table:
            raise ValueError(f"sequence {seq.seq_id} already holds blocks")
        tokens = seq.all_token_ids
        bs = self.block_size
        h = seq.hash_seed
        parent = -1
        hits: list[int] = []
        for start in range(0, (len(tokens) - 1) // bs * bs if self.enable_caching else 0, bs):
            chunk = tuple(tokens[start : start + bs])
            h = block_hash(h, chunk)
            bid = self._cached.get(h)
            if bid is None:
                break
            b = self.blocks[bid]
            if b.tokens != chunk or b.parent != parent or b.namespace != seq.cache_namespace:
                break
            hits.append(bid)
            parent = bid
        self.queried_tokens_total += len(tokens)
        for bid in hits:
            self._ref(bid)
        seq.block_table = hits
        seq.block_hashes = []
        h = seq.hash_seed
        for bid in hits:
            h = self.blocks[bid].hash
            seq.block_hashes.append(h)
        seq.num_computed = len(hits) * bs
        self.hit_tokens_total += seq.num_computed
        return seq.num_computed

    def register_full_blocks(self, seq: Sequence) -> None:
        """Register every newly completed block of ``seq`` (after its tokens' KV was written)."""
        if not self.enable_caching:
            return
        bs = self.block_size
        tokens = seq.all_token_ids
        full = min(seq.num_computed, len(tokens)) // bs
        while len(seq.block_hashes) < full:
            i = len(seq.block_hashes)
            parent_hash = seq.block_hashes[-1] if seq.block_hashes else seq.hash_seed
            chunk = tuple(tokens[i * bs : (i + 1) * bs])
            h = block_hash(parent_hash, chunk)
            seq.block_hashes.append(h)
            bid = seq.block_table[i]
            b = self.blocks[bid]
            if b.hash is None and h not in self._cached:
                b.hash, b.tokens, b.namespace = h, chunk, seq.cache_namespace
                b.parent = self._cached.get(parent_hash, -1) if i else -1
                self._cached[h] = bid

    # ---- allocation -------------------------------------------------------------------------
    def allocate(self, seq: Sequence, num_tokens: int) -> bool:
        """Give ``seq`` blocks for ``num_tokens`` more tokens; False (and nothing changed) if there are not enough."""
        need = self.blocks_needed(seq, num_tokens)
        if need > self.num_available():
            return False
        for _ in range(need):
            seq.block_table.append(self._take())
        return True

    def free(self, seq: Sequence) -> None:
        """Release ``seq``'s blocks: cached ones stay reusable until evicted, the rest return to the free list."""
        for bid in reversed(seq.block_table):
            b = self.blocks[bid]
            b.ref -= 1
            if b.ref < 0:
                raise RuntimeError(f"block {bid} released more often than taken")
            if b.ref == 0:
                if b.hash is not None:
                    self._evictable[bid] = None
                else:
                    self._free.append(bid)
        seq.block_table = []
        seq.block_hashes = []
        seq.num_computed = 0

    def _ref(self, bid: int) -> None:
        b = self.blocks[bid]
        if b.ref == 0:
            self._evictable.pop(bid, None)
        b.ref += 1

    def _take(self) -> int:
        if self._free:
            bid = self._free.pop()
        else:
            bid, _ = self._evictable.popitem(last=False)  # least recently used cached block
            b = self.blocks[bid]
            if self._cached.get(b.hash) == bid:
                del self._cached[b.hash]
            b.hash, b.tokens, b.parent, b.namespace = None, (), -1, ""
        self.blocks[bid].ref = 1
        return bid

    def cached_block_ids(self, namespace: str) -> set[int]:
        """Blocks registered in the prefix cache under ``namespace`` (for tests and introspection)."""
        return {bid for bid in self._cached.values() if self.blocks[bid].namespace == namespace}

    def reset_prefix_cache(self) -> None:
        for bid in list(self._evictable):
            b = self.blocks[bid]
            self._cached.pop(b.hash, None)
            b.hash, b.tokens, b.parent, b.namespace = None, (), -1, ""
            self._free.append(bid)
        self._evictable.clear()
