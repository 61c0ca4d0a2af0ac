"""openai-sim's prefix cache (`prefix_cache: true`), as vLLM's automatic prefix caching counts.

A prompt's tokens (its whitespace-separated words, as the simulator counts them) are cut into
blocks of `prefix_block`; each full block is keyed by a digest of everything up to its end, so
a block is found only when the whole prompt before it matched too. A request's hits are the
tokens of its leading blocks already cached; then all its full blocks are cached (the oldest
forgotten first). The counters are vLLM v1's, in tokens: `vllm:prefix_cache_queries` (every
prompt token) and `vllm:prefix_cache_hits`.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

HEADER = "X-Sim-Prefix-Hit-Tokens"
_KEEP = 1_000_000   # blocks remembered


class PrefixCache:
    def __init__(self, block: int) -> None:
        self.block = block
        self._blocks: OrderedDict[bytes, None] = OrderedDict()
        self.queries = 0
        self.hits = 0

    def lookup(self, prompt: str) -> int:
        """The prompt's tokens found cached (a whole number of blocks); it is cached after."""
        words = prompt.split()
        digest = hashlib.blake2b(digest_size=16)
        hits = 0
        matching = True
        for end in range(self.block, len(words) + 1, self.block):
            digest.update(" ".join(words[end - self.block:end]).encode("utf-8", "surrogatepass"))
            digest.update(b"\n")
            key = digest.copy().digest()
            if matching and key in self._blocks:
                hits += self.block
                self._blocks.move_to_end(key)
            else:
                matching = False
                self._blocks[key] = None
        while len(self._blocks) > _KEEP:
            self._blocks.popitem(last=False)
        self.queries += len(words)
        self.hits += hits
        return hits
