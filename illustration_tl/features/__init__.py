"""CNN activations of images, extracted once and stored (paper §6.1, §7.2): the paper's
sharded embeddings (:mod:`.embeddings`) and ``fit``'s multi-layer pooled blocks
(:mod:`.multilayer`).
"""

__all__ = ["embeddings", "multilayer"]
