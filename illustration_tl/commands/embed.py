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
With ``--model_dir`` the trained model's backbone, image size and resize mode are
used; --backbone, --weights, --include_top, --image_size and --resize_mode do not apply.
"""

from __future__ import annotations

from illustration_tl.commands import app
from illustration_tl.core import config_flags
from illustration_tl.features.embeddings import EmbedConfig

# One flag per field of EmbedConfig: names, defaults and help live there.
FLAGS = config_flags.define(EmbedConfig)


def config() -> EmbedConfig:
    """The :class:`embeddings.EmbedConfig` the flags describe."""
    return EmbedConfig(**config_flags.values(FLAGS, EmbedConfig))


def main(argv) -> int:
    from illustration_tl.errors import UserError
    from illustration_tl.features import embeddings

    cfg = config()
    if not cfg.output:
        raise UserError("--output is required: the folder to write the embeddings to")
    source = embeddings.embedding_source(
        model_dir=cfg.model_dir, backbone=cfg.backbone, weights=cfg.weights,
        image_size=cfg.image_size, layer=cfg.layer, include_top=cfg.include_top,
        seed=cfg.seed, resize_mode=cfg.resize_mode)
    print(f"embedding model: {source.backbone} at {source.image_size}px, layer {source.layer}, "
          f"weights {source.weights_source}")
    written = embeddings.embed_dataset(
        source, dataset=cfg.dataset, splits=cfg.splits, output=cfg.output,
        data_dir=cfg.data_dir, batch_size=cfg.batch_size, shard_size=cfg.shard_size,
        overwrite=cfg.overwrite)
    for split, meta in written.items():
        print(f"{split}: {meta['num_examples']} x {meta['dim']} embeddings in "
              f"{meta['num_shards']} shard(s), {meta['images_per_second']} images/s")
    print(f"wrote {cfg.output}")
    return 0


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
