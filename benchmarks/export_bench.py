"""Exported SavedModel (CNN + SVM) against the in-process Python pipeline, same images.

    python benchmarks/export_bench.py [--image_size=64 --batch_size=32 --batches=5]

Both sides classify the same batches of already-resized RGB images:

* python: ``preprocess_input`` + the Keras embedding model (``predict_on_batch``)
  + the scikit-learn SVM's ``decision_function``;
* export: the SavedModel's ``classify_images`` signature (all of that in one graph),
  loaded with ``tf.saved_model.load``;
* export-bytes: ``serving_default`` on PNG bytes (decoding and resizing included).

Prints images/s of each and the ratio export / python.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="vgg16")
    p.add_argument("--weights", default=os.environ.get("ILLUSTRATION_TL_VGG16_WEIGHTS", ""))
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--batches", type=int, default=5)
    p.add_argument("--classes", type=int, default=10)
    args = p.parse_args()

    import tensorflow as tf
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import SVC

    from illustration_tl.features import embeddings
    from illustration_tl.models import backbones
    from illustration_tl.serving import export

    source = embeddings.embedding_source(backbone=args.backbone, weights=args.weights or None,
                                         image_size=args.image_size)
    bb = backbones.get(args.backbone)
    rng = np.random.default_rng(0)
    n = args.batch_size * args.batches
    images = rng.integers(0, 256, (n, args.image_size, args.image_size, 3)).astype(np.float32)
    feats = source.model.predict(bb.preprocess_input(images.copy()), verbose=0)
    labels = np.arange(n) % args.classes
    svm = OneVsRestClassifier(SVC(kernel="rbf", C=1, gamma=1e-4)).fit(feats, labels)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "export")
        export.export_classifier(path, model=source.model, backbone=args.backbone,
                                 image_size=args.image_size,
                                 class_names=[f"c{i}" for i in range(args.classes)],
                                 svm_model=svm)
        loaded = tf.saved_model.load(path)
        pixels = loaded.signatures["classify_images"]
        serve = loaded.signatures["serving_default"]
        batches = [images[i:i + args.batch_size] for i in range(0, n, args.batch_size)]
        pngs = [tf.constant([tf.io.encode_png(tf.cast(x, tf.uint8)).numpy() for x in b])
                for b in batches]

        def python_side(batch):
            x = bb.preprocess_input(batch.copy())
            return svm.decision_function(source.model.predict_on_batch(x))

        def export_side(batch):
            return pixels(images=tf.constant(batch))["all_scores"].numpy()

        def bytes_side(i):
            return serve(image_bytes=pngs[i])["all_scores"].numpy()

        np.testing.assert_allclose(export_side(batches[0]), python_side(batches[0]),
                                   rtol=1e-3, atol=1e-4)
        timings = {}
        for name, fn, items in [("python", python_side, batches),
                                ("export", export_side, batches),
                                ("export-bytes", bytes_side, range(len(batches)))]:
            fn(next(iter(items)))  # warm-up
            start = time.perf_counter()
            for item in items:
                fn(item)
            timings[name] = n / (time.perf_counter() - start)
    print(f"{args.backbone} {args.image_size}px, batch {args.batch_size}, {n} images, "
          f"weights={source.weights_source}")
    for name, rate in timings.items():
        print(f"  {name:13s} {rate:8.1f} images/s")
    print(f"ratio export/python: {timings['export'] / timings['python']:.3f}; "
          f"export-bytes/python: {timings['export-bytes'] / timings['python']:.3f}")


if __name__ == "__main__":
    main()
