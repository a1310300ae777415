"""CNN activations of images, extracted once and stored (paper §6.1, §7.2): the paper's
sharded embeddings (:mod:`.embeddings`), ``fit``'s multi-layer pooled blocks
(:mod:`.multilayer`, extracted by :mod:`.extraction`) and the feature store they are kept
in (:mod:`.store`).
"""

__all__ = ["embeddings", "extraction", "multilayer", "store"]
