"""bfloat16 feature extraction (issue 21): the one rule that picks the precision, the
extractor built in bfloat16 on real fixture images, and no dtype policy left behind."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from illustration_tl.errors import UserError
from illustration_tl.models import precision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(ROOT, "tests", "fixtures", "openclipart_small")
SIZE = 32
COSINE_MIN = 0.99
NO_FLAGS: frozenset[str] = frozenset()
X86_BF16 = frozenset({"fpu", "avx512f", "avx512_bf16"})
X86_AMX = frozenset({"fpu", "amx_tile", "amx_bf16"})
X86_PLAIN = frozenset({"fpu", "avx2", "avx512f", "avx512_vnni"})


@pytest.mark.parametrize("requested", ["float32", "bfloat16"])
def test_an_explicit_precision_wins_over_the_hardware(requested):
    for cpu in (NO_FLAGS, X86_BF16):
        for gpus in ([], [(9, 0)], [(7, 0)]):
            assert precision.resolve(requested, cpu=cpu, gpus=gpus) == requested


def test_auto_on_a_cpu_follows_its_bf16_flags():
    assert precision.resolve("auto", cpu=X86_BF16, gpus=[]) == "bfloat16"
    assert precision.resolve("auto", cpu=X86_AMX, gpus=[]) == "bfloat16"
    assert precision.resolve("auto", cpu=X86_PLAIN, gpus=[]) == "float32"
    assert precision.resolve("auto", cpu=NO_FLAGS, gpus=[]) == "float32"


def test_auto_with_gpus_follows_every_gpu_and_ignores_the_cpu():
    assert precision.resolve("auto", cpu=NO_FLAGS, gpus=[(8, 0)]) == "bfloat16"
    assert precision.resolve("auto", cpu=NO_FLAGS, gpus=[(9, 0), (8, 6)]) == "bfloat16"
    assert precision.resolve("auto", cpu=X86_BF16, gpus=[(7, 5)]) == "float32"
    assert precision.resolve("auto", cpu=X86_BF16, gpus=[(9, 0), (7, 0)]) == "float32"
    assert precision.resolve("auto", cpu=X86_BF16, gpus=[(0, 0)]) == "float32"  # unknown


def test_values_are_case_insensitive_and_a_bad_one_is_one_line_naming_the_flag():
    assert precision.resolve(" BFloat16 ", cpu=NO_FLAGS, gpus=[]) == "bfloat16"
    with pytest.raises(UserError) as e:
        precision.resolve("fp16", cpu=X86_BF16, gpus=[])
    message = str(e.value)
    assert "\n" not in message and "--precision='fp16'" in message
    assert all(c in message for c in ("auto", "float32", "bfloat16"))
    with pytest.raises(UserError, match="--feature_precision="):
        precision.resolve("half", flag="--feature_precision")


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: x\nflags\t\t: fpu avx512f avx512_bf16\n\n"
                    "processor\t: 1\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert precision.cpu_flags(str(info)) == frozenset({"fpu", "avx512f", "avx512_bf16"})
    assert precision.cpu_flags(str(tmp_path / "missing")) == frozenset()
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert precision.resolve("auto", cpu=precision.cpu_flags(str(arm)), gpus=[]) == "float32"


def test_this_machine_resolves_auto_from_its_own_hardware():
    flags = precision.cpu_flags()
    gpus = precision.gpu_capabilities()
    expected = precision.resolve("auto", cpu=flags, gpus=gpus)
    assert precision.resolve("auto") == expected
    if not gpus:
        assert (expected == "bfloat16") == bool(flags & precision.CPU_BF16_FLAGS)


def test_policy_scope_restores_the_global_policy_even_on_error():
    import keras

    before = keras.config.dtype_policy().name
    with precision.policy_scope("bfloat16") as policy:
        assert policy.name == "mixed_bfloat16"
        assert keras.layers.Dense(2).compute_dtype == "bfloat16"
        assert keras.layers.Dense(2).variable_dtype == "float32"
    assert keras.config.dtype_policy().name == before
    with pytest.raises(RuntimeError, match="inside"):
        with precision.policy_scope("bfloat16"):
            raise RuntimeError("inside")
    assert keras.config.dtype_policy().name == before
    with pytest.raises(ValueError, match="resolve"):
        precision.keras_policy("auto")


def _fixture_pixels(per_class: int = 2) -> np.ndarray:
    """Real clip art from the fixtures, resized to SIZE (float32 RGB, 0-255)."""
    from PIL import Image

    from illustration_tl.datasets import ingestion

    paths = []
    for folder in sorted(glob.glob(os.path.join(SMALL, "*"))):
        paths += sorted(glob.glob(os.path.join(folder, "*.png")))[:per_class]
    assert len(paths) >= 5 * per_class, SMALL
    return np.stack([np.asarray(Image.fromarray(ingestion.load_image(p)).resize(
        (SIZE, SIZE), Image.BILINEAR), np.float32) for p in paths])


def _fixture_images(per_class: int = 2) -> np.ndarray:
    """:func:`_fixture_pixels` preprocessed for VGG16 (float32)."""
    from illustration_tl.models import backbones

    x = backbones.get("vgg16").preprocess_input(_fixture_pixels(per_class))
    return np.asarray(x, np.float32)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    assert (na > 0).all() and (nb > 0).all(), "degenerate features: the test would mean nothing"
    return (a * b).sum(axis=1) / (na * nb)


def test_bfloat16_extractor_is_close_to_float32_on_real_images_and_leaves_no_policy():
    import keras

    from illustration_tl.features import multilayer as features
    from illustration_tl.models import extractor as extractor_lib

    before = keras.config.dtype_policy().name
    f32, blocks, _ = features.extractor("vgg16", None, SIZE, precision="float32")
    bf16, blocks16, _ = features.extractor("vgg16", None, SIZE, precision="bfloat16")
    assert keras.config.dtype_policy().name == before
    assert blocks16 == blocks and len(blocks) == 7
    # Same weights (same seed, float32 variables); the conv layers compute in bfloat16.
    assert extractor_lib.model_fingerprint(bf16) == extractor_lib.model_fingerprint(f32)
    convs = [la for la in bf16.layers if isinstance(la, keras.layers.Conv2D)]
    assert convs and all(la.compute_dtype == "bfloat16" for la in convs)
    assert all(la.compute_dtype == "float32" for la in f32.layers
               if isinstance(la, keras.layers.Conv2D))
    x = _fixture_images()
    outs32, outs16 = f32(x, training=False), bf16(x, training=False)
    for block, a, b in zip(blocks, outs32, outs16):
        assert [keras.backend.standardize_dtype(t.dtype) for t in (a, b)] == ["float32"] * 2, \
            block
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape
        cos = _cosines(a, b)
        assert cos.min() > COSINE_MIN, (block, cos.min())
        assert not np.array_equal(a, b), f"{block}: bfloat16 computed nothing in bfloat16"


def test_float32_precision_is_the_default_extractor_unchanged():
    import keras

    from illustration_tl.features import multilayer as features

    default, _, _ = features.extractor("vgg16", None, SIZE)
    explicit, _, _ = features.extractor("vgg16", None, SIZE, precision="float32")
    def described(model):
        return [(type(la).__name__, la.name, la.dtype_policy.name) for la in model.layers
                if not isinstance(la, keras.layers.InputLayer)]

    assert described(explicit) == described(default)
    assert all(name == "float32" for _, _, name in described(default))
    x = _fixture_images(per_class=1)
    for a, b in zip(default(x, training=False), explicit(x, training=False)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_extract_records_the_precision_in_the_store_meta(tmp_path):
    import shutil

    from illustration_tl.datasets.illustrations import illustrations_dataset_builder as b
    from illustration_tl.features import multilayer as features

    images = tmp_path / "images"
    for c in ("bird", "flower"):
        shutil.copytree(os.path.join(SMALL, c), images / c)
    data_dir = str(tmp_path / "tfds")
    b.build("curated", str(images), data_dir, overwrite=True, flag="--images", num_workers=1)
    stores = {}
    for p in ("float32", "bfloat16"):
        stores[p] = features.extract(
            "illustrations/curated", data_dir, ["train", "test"], backbone="vgg16",
            weights=None, out=str(tmp_path / p), work=str(tmp_path / f"work-{p}"),
            image_size=SIZE, resize_modes=("squash",), flip=False, batch_size=8, precision=p)
        assert stores[p].meta["precision"] == p
    a, b16 = stores["float32"], stores["bfloat16"]
    assert a.file_names == b16.file_names
    checked = 0
    for split, arrays in a.arrays.items():
        for name, x in arrays.items():
            x, y = np.asarray(x), np.asarray(b16.arrays[split][name])
            assert y.dtype == np.float32 and x.shape == y.shape and len(x) > 0
            assert _cosines(x, y).min() > COSINE_MIN, (split, name)
            checked += 1
    assert checked == 2 * len(a.blocks)


def test_a_keras_hub_tower_in_bfloat16_gives_float32_blocks_close_to_float32():
    pytest.importorskip("keras_hub")  # the `hub` extra
    import keras

    from illustration_tl.features import multilayer as features
    from illustration_tl.models import backbones

    before = keras.config.dtype_policy().name
    tiny = dict(patch_size=8, num_layers=3, hidden_dim=16, num_heads=2, intermediate_dim=32)
    built = {p: features.extractor("keras_hub:clip", None, SIZE, None, 0, tiny, precision=p)
             for p in ("float32", "bfloat16")}
    assert keras.config.dtype_policy().name == before
    x = np.asarray(backbones.get("keras_hub:clip").preprocess_input(_fixture_pixels()),
                   np.float32)
    outs = {p: m(x, training=False) for p, (m, _, _) in built.items()}
    assert built["float32"][1] == built["bfloat16"][1]
    for block, a, b in zip(built["float32"][1], outs["float32"], outs["bfloat16"]):
        assert keras.backend.standardize_dtype(b.dtype) == "float32", block
        assert _cosines(np.asarray(a), np.asarray(b)).min() > COSINE_MIN, block
