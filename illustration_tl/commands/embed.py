"""``illustration-tl embed --output=DIR`` (paper §6.1: CNN embeddings for the SVM).

Runs a CNN over splits of an `illustrations` TFDS dataset and writes the
activations of one layer, shard by shard, to ``DIR/<split>/``:

  # the baseline: ImageNet VGG19 fc2 (downloads the weights)
  illustration-tl embed --backbone=vgg19 --weights=imagenet --output=runs/emb_vgg19
  # the shared VGG16 ImageNet conv base: global average pool of the last conv block
  illustration-tl embed --backbone=vgg16 \\
      --weights=../shared/weights/vgg16_imagenet_notop.weights.h5 --output=runs/emb_vgg16
  # the optimized network (output of `optimize`): its fc2
  illustration-tl embed --model_dir=runs/optimize --output=runs/emb_optimized

Each split gets ``shard-NNNNN.npz`` files (embeddings, labels, file names) and
``metadata.json`` (classes, layer, image size, preprocessing, model
fingerprint, dataset version). A split is written under a temporary name and
renamed when complete; an existing split is kept unless ``--overwrite``.
"""

from __future__ import annotations

from absl import flags

from illustration_tl.commands import app

_DATASET = flags.DEFINE_string("dataset", "illustrations/curated", "TFDS dataset to embed.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data folder (default "
                                "~/tensorflow_datasets or $TFDS_DATA_DIR).")
_SPLITS = flags.DEFINE_list("splits", ["train", "validation", "test"], "Splits to embed.")
_OUTPUT = flags.DEFINE_string("output", None, "Folder for the embeddings (one subfolder per "
                              "split).")
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Output folder of `illustration-tl "
                                 "optimize`; its backbone, image size and resize mode are used.")
_BACKBONE = flags.DEFINE_string("backbone", "vgg19", "Without --model_dir: keras.applications "
                                "backbone (vgg19, vgg16, resnet50, ...).")
_WEIGHTS = flags.DEFINE_string("weights", "imagenet", "Without --model_dir: 'imagenet' "
                               "(downloaded by Keras), a local .h5/.weights.h5 file, or 'none' "
                               "(random initialization, seeded by --seed).")
_INCLUDE_TOP = flags.DEFINE_enum(
    "include_top", "auto", ["auto", "yes", "no"], "Without --model_dir: build the classifier "
    "top (fc1, fc2) or only the conv base. auto: the top when the weights have one.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Without --model_dir: input side in "
                                   "pixels (default: the backbone's, 224 for VGG).")
_LAYER = flags.DEFINE_string("layer", None, "Layer whose activations are the embedding "
                             "(default: fc2 with a VGG top, avg_pool for pooled heads, else the "
                             "global average pool of the last conv block). Conv layers are "
                             "global-average-pooled.")
_RESIZE_MODE = flags.DEFINE_enum("resize_mode", "squash", ["squash", "pad"], "Without "
                                 "--model_dir: squash (plain resize, the paper's) or pad "
                                 "(white square first). A trained model uses its own.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")
_SHARD_SIZE = flags.DEFINE_integer("shard_size", 4096, "Embeddings per shard file (bounds "
                                   "the memory used while writing).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace splits that already exist.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for randomly initialized weights.")


def main(argv) -> int:
    from illustration_tl import embeddings
    from illustration_tl.errors import UserError

    if not _OUTPUT.value:
        raise UserError("--output is required: the folder to write the embeddings to")
    source = embeddings.embedding_source(
        model_dir=_MODEL_DIR.value, backbone=_BACKBONE.value, weights=_WEIGHTS.value,
        image_size=_IMAGE_SIZE.value, layer=_LAYER.value, include_top=_INCLUDE_TOP.value,
        seed=_SEED.value, resize_mode=_RESIZE_MODE.value)
    print(f"embedding model: {source.backbone} at {source.image_size}px, layer {source.layer}, "
          f"weights {source.weights_source}")
    written = embeddings.embed_dataset(
        source, dataset=_DATASET.value, splits=_SPLITS.value, output=_OUTPUT.value,
        data_dir=_DATA_DIR.value, batch_size=_BATCH_SIZE.value, shard_size=_SHARD_SIZE.value,
        overwrite=_OVERWRITE.value)
    for split, meta in written.items():
        print(f"{split}: {meta['num_examples']} x {meta['dim']} embeddings in "
              f"{meta['num_shards']} shard(s), {meta['images_per_second']} images/s")
    print(f"wrote {_OUTPUT.value}")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
