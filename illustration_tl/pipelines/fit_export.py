"""``fit``'s SavedModel: image bytes (or pixels) in, calibrated probabilities out.

The feature extractor the store was computed with
(:func:`illustration_tl.features.multilayer.extractor`, rebuilt from the store's
recipe) and the chosen head (:class:`illustration_tl.heads.head.Head`), handed to the
one graph builder of every export, :func:`illustration_tl.serving.export.write_classifier`
(extractor, head, top-k; the metadata beside the SavedModel). On a backend other than
TensorFlow the extractor is first rebuilt in TensorFlow
(:func:`illustration_tl.serving.export.tf_model`), so a JAX run exports the same graph.
"""

from __future__ import annotations

from typing import Any

from illustration_tl.evaluation import reject as reject_lib

EXPORT_FORMAT = "illustration-tl fit classifier v1"


def export(final_dir: str, feat_dir: str, out: str, top_k: int = 5,
           reject: reject_lib.RejectThreshold | None = None) -> dict[str, Any]:
    """Writes the SavedModel: image bytes (or pixels) in, calibrated probabilities out;
    ``reject`` (the threshold of ``--reject``) goes into its metadata."""
    from illustration_tl.features import multilayer as features
    from illustration_tl.heads import head as head_lib
    from illustration_tl.serving import export as export_lib

    h = head_lib.Head.load(final_dir)
    recipe = features.FeatureStore.load(feat_dir).meta["recipe"]
    model, blocks, source = features.extractor(
        recipe["backbone"], recipe["weights"], recipe["image_size"],
        recipe["layers"] or None, recipe["seed"], recipe.get("hub_config"),
        recipe.get("include_top", "auto"), precision=recipe.get("precision", "float32"))
    # the backbone as the store's recipe names it (a KerasHub preset, not its family)
    extra: dict[str, Any] = {"format": EXPORT_FORMAT, "backbone": source.backbone}
    if reject is not None:
        extra["reject"] = reject.to_dict()
    return export_lib.write_classifier(
        out, model=model, backbone=source.backbone, image_size=source.image_size,
        head=h, blocks=blocks, resize_mode=h.config.resize, top_k=top_k, metadata=extra)
