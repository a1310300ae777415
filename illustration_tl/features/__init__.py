"""CNN activations of images, extracted once and stored (paper §6.1, §7.2): the paper's
sharded embeddings (:mod:`.embeddings`), ``fit``'s multi-layer pooled blocks
(:mod:`.multilayer`, extracted by :mod:`.extraction`) and the feature store they are kept
in (:mod:`.store`); ``fit``'s extraction on Apache Beam (:mod:`.beam_extract`,
:mod:`.beam_inference`).
"""

__all__ = ["beam_extract", "beam_inference", "embeddings", "extraction", "multilayer",
           "store"]
