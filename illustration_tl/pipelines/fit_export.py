"""``fit``'s SavedModel: image bytes (or pixels) in, calibrated probabilities out.

One graph: the feature extractor the store was computed with
(:func:`illustration_tl.features.multilayer.extractor`, rebuilt from the store's
recipe), the chosen head (:class:`illustration_tl.heads.head.Head`) and top-k, written
by :func:`illustration_tl.serving.export.write_archive` with its metadata beside it.
On a backend other than TensorFlow the extractor is first rebuilt in TensorFlow
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
    import tensorflow as tf

    from illustration_tl.features import multilayer as features
    from illustration_tl.heads import head as head_lib
    from illustration_tl.models import backbones
    from illustration_tl.serving import export as export_lib

    h = head_lib.Head.load(final_dir)
    recipe = features.FeatureStore.load(feat_dir).meta["recipe"]
    model, blocks, source = features.extractor(
        recipe["backbone"], recipe["weights"], recipe["image_size"],
        recipe["layers"] or None, recipe["seed"], recipe.get("hub_config"),
        recipe.get("include_top", "auto"), precision=recipe.get("precision", "float32"))
    bb = backbones.get(source.backbone)
    size, mode = source.image_size, h.config.resize
    wanted = [blocks.index(b) for b in h.config.blocks]
    module = h.tf_variables()
    names = tf.constant(h.class_names)
    k = max(1, min(top_k, h.num_classes))
    info = {"format": EXPORT_FORMAT, "backbone": source.backbone, "image_size": size,
            "resize_mode": mode, "class_names": h.class_names, "config": h.config.as_dict(),
            "label": h.config.label(), "temperature": h.temperature, "top_k": k,
            "outputs": "probabilities"}
    if reject is not None:
        info["reject"] = reject.to_dict()

    network = export_lib.tf_model(model)

    def block_outputs(x: Any) -> dict[str, Any]:
        outs = network(x)
        return {blocks[i]: outs[i] for i in wanted}

    def classify(images: Any) -> dict:
        x = bb.preprocess_input(tf.identity(images))
        orig = block_outputs(x)
        flip = block_outputs(tf.image.flip_left_right(x)) if h.config.flip_test else None
        probs = h.tf_probabilities(orig, flip, module)
        top = tf.math.top_k(probs, k=k)
        return {"class_names": tf.gather(names, top.indices), "class_indices": top.indices,
                "scores": tf.cast(top.values, tf.float32),
                "probabilities": tf.cast(probs, tf.float32),
                # The name `export`'s models use for every class's score (`evaluate`).
                "all_scores": tf.cast(probs, tf.float32)}

    export_lib.write_archive(out, classify=classify, image_size=size,
                             resize_mode=mode, metadata=info)
    return info
