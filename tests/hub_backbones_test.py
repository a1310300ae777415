"""KerasHub vision towers as ``fit`` backbones (issue 13): DINOv2, CLIP and SigLIP.

Presets download their weights at run time, so these run tiny randomly initialized
towers of each family (``keras_hub:<family>`` + ``hub_config``, ``weights=None``):
they check the plumbing (features, search, export, load), never accuracy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest

from illustration_tl.errors import UserError
from illustration_tl.features import multilayer as features
from illustration_tl.heads import grids

keras_hub = pytest.importorskip("keras_hub")  # the `hub` extra (also in the `test` extra)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = os.path.join(ROOT, "tests", "fixtures", "openclipart_small")
ENV = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           TF_CPP_MIN_LOG_LEVEL="3")
SIZE = 32
TINY = dict(patch_size=8, num_layers=3, hidden_dim=16, num_heads=2, intermediate_dim=32)
CONFIGS = {
    # two register tokens: the patch pools must skip them as well as the class token
    "dinov2": dict(TINY, num_register_tokens=2, position_embedding_shape=[SIZE, SIZE]),
    "clip": dict(TINY),
    "siglip": dict(TINY),
}
FAMILIES = tuple(CONFIGS)


def _tower_tokens(family: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(final output, final-normed tokens of the last block)`` of an independently built
    tower with the same seed (so the same random weights)."""
    import keras

    from illustration_tl.models import backbones, hub_backbones

    spec = backbones.get(f"keras_hub:{family}")
    tower, size, _ = hub_backbones.build_tower(spec, None, SIZE, CONFIGS[family], seed=0)
    assert size == SIZE
    last = (tower.pyramid_outputs[f"stage{TINY['num_layers']}"] if family == "dinov2"
            else tower.encoder_layers[-1].output)
    norm = getattr(tower, spec.hub.final_norm)
    model = keras.Model(tower.inputs[0], [tower.output, norm(last)])
    out, tokens = model(x, training=False)
    return np.asarray(out), np.asarray(tokens)


@pytest.mark.parametrize("family", FAMILIES)
def test_feature_blocks_and_what_they_pool(family):
    from illustration_tl.models import backbones

    model, blocks, source = features.extractor(f"keras_hub:{family}", None, SIZE, None, 0,
                                               CONFIGS[family])
    pools = ("cls", "avg", "max") if family != "siglip" else ("avg", "max")
    # 3 blocks: the defaults are blocks 2 and 3 (2/3 and 5/6 of the depth round to 2)
    assert blocks == [features.PAPER_BLOCK] + [f"block_{k}:{p}" for k in (2, 3) for p in pools]
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    x = np.asarray(backbones.get(f"keras_hub:{family}").preprocess_input(pixels))
    outs = dict(zip(blocks, [np.asarray(o) for o in model(x, training=False)]))
    assert all(o.shape == (3, 16) for o in outs.values()), {b: o.shape for b, o in outs.items()}
    final, tokens = _tower_tokens(family, x)
    patches = tokens[:, {"dinov2": 3, "clip": 1, "siglip": 0}[family]:]
    assert patches.shape[1] == (SIZE // 8) ** 2
    np.testing.assert_allclose(outs["block_3:avg"], patches.mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(outs["block_3:max"], patches.max(axis=1), atol=1e-5)
    if family == "siglip":  # the attention-pooling head is SigLIP's image embedding
        np.testing.assert_allclose(outs["paper"], final, atol=1e-5)
        assert source.layer == "head"
    else:  # the final class token, as the tower outputs it
        np.testing.assert_allclose(outs["paper"], final[:, 0], atol=1e-5)
        np.testing.assert_allclose(outs["block_3:cls"], tokens[:, 0], atol=1e-5)
        assert source.layer == "block_3:cls"
    assert not np.allclose(outs["block_2:avg"], outs["block_3:avg"], atol=1e-3)
    meta = source.metadata()
    assert meta["backbone"] == f"keras_hub:{family}" and meta["weights_source"] == "random-init"
    assert meta["source"]["hub_config"] == CONFIGS[family]


def test_preprocessing_is_the_families_image_converter():
    """CLIP: OpenAI mean/std on [0, 1]; SigLIP: [-1, 1]; DINOv2: ImageNet mean/std."""
    from illustration_tl.models import backbones

    px = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    got = {f: np.asarray(backbones.get(f"keras_hub:{f}").preprocess_input(px))[0, 0, 0]
           for f in FAMILIES}
    np.testing.assert_allclose(got["siglip"], [-1.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(got["dinov2"], [(0 - 0.485) / 0.229, (0.5 - 0.456) / 0.224,
                                               (1 - 0.406) / 0.225], atol=1e-5)
    np.testing.assert_allclose(got["clip"], [-0.48145466 / 0.26862954,
                                             (0.5 - 0.4578275) / 0.26130258,
                                             (1 - 0.40821073) / 0.27577711], atol=1e-5)
    # the same numbers as keras_hub's own converter layer with the presets' scale/offset
    fam = backbones.HUB_FAMILIES["clip"]
    conv = keras_hub.layers.CLIPImageConverter(
        scale=[1 / 255 / s for s in fam.std], offset=[-m / s for m, s in zip(fam.mean, fam.std)])
    np.testing.assert_allclose(np.asarray(conv(px))[0, 0, 0], got["clip"], atol=1e-5)


def test_preset_names_resolve_to_their_family_without_downloading():
    from illustration_tl.models import backbones

    for name, family in [("dinov2_small", "dinov2"), ("clip_vit_base_patch16", "clip"),
                         ("siglip_base_patch16_224", "siglip"),
                         ("siglip2_base_patch16_224", "siglip")]:
        spec = backbones.get(f"keras_hub:{name}")
        assert (spec.hub.name, spec.preset, spec.name) == (family, name, f"keras_hub:{name}")
    with pytest.raises(UserError, match="not a KerasHub preset"):
        backbones.get("keras_hub:dinov2_tiny")
    with pytest.raises(UserError, match="names a family, not a preset"):
        features.extractor("keras_hub:clip", "imagenet", SIZE)
    with pytest.raises(UserError, match="KerasHub backbones"):
        features.extractor("vgg16", None, SIZE, hub_config={"num_layers": 2})
    with pytest.raises(UserError, match="block_1 ... block_3"):
        features.extractor("keras_hub:clip", None, SIZE, ["block_4"], 0, CONFIGS["clip"])
    with pytest.raises(UserError, match="fit"):  # embed/optimize need a CNN
        backbones.get("keras_hub:dinov2").application()


def _save_preset(family: str, folder: str, converter_scale: float | None = None) -> Any:
    """A tiny random model of ``family`` saved as a KerasHub preset folder (what KerasHub
    downloads), with the family's image converter; returns the vision tower."""
    from illustration_tl.models import backbones

    hub = keras_hub.models
    fam = backbones.HUB_FAMILIES[family]
    config = dict(CONFIGS[family], image_shape=(SIZE, SIZE, 3))
    tower = getattr(hub, fam.tower_class)(**config)
    text = dict(vocabulary_size=10, embedding_dim=16, hidden_dim=16, num_layers=1,
                num_heads=2, intermediate_dim=32, max_sequence_length=8)
    if family == "dinov2":
        model = tower
    elif family == "clip":
        model = hub.CLIPBackbone(tower, hub.CLIPTextEncoder(**text), projection_dim=8)
    else:
        model = hub.SigLIPBackbone(tower, hub.SigLIPTextEncoder(**text))
    model.save_to_preset(folder)
    scale = [converter_scale or 1 / 255 / s for s in fam.std]
    keras_hub.layers.ImageConverter(image_size=(SIZE, SIZE), scale=scale, offset=[
        -m / s for m, s in zip(fam.mean, fam.std)]).save_to_preset(folder)
    return tower


@pytest.mark.parametrize("family", FAMILIES)
def test_a_preset_folder_loads_its_weights_and_native_size(tmp_path, family):
    """The preset path (what `keras_hub:<preset>` downloads), offline from a saved folder:
    the tower comes out of the preset's model with the saved weights, at its own size."""
    tower = _save_preset(family, str(tmp_path / family))
    name = f"keras_hub:{tmp_path / family}"
    # DINOv2 interpolates its position embeddings: 224 unless told (HF's crop); CLIP and
    # SigLIP run at their preset's side only
    if family == "dinov2":
        assert features.extractor(name, "imagenet", None, ["block_3"])[2].image_size == 224
    else:
        assert features.extractor(name, "imagenet", None, ["block_3"])[2].image_size == SIZE
        with pytest.raises(UserError, match="runs at 32 px only"):
            features.extractor(name, "imagenet", 48, ["block_3"])
    model, blocks, source = features.extractor(name, "imagenet", SIZE, ["block_3"])
    assert source.image_size == SIZE and source.weights_source.startswith("keras_hub preset")
    x = np.random.default_rng(1).normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)
    want = np.asarray(tower({"images": x}, training=False))
    got = np.asarray(model(x, training=False)[0])
    np.testing.assert_allclose(got, want if family == "siglip" else want[:, 0], atol=1e-5)
    random = features.extractor(name, None, SIZE, ["block_3"])[0]
    assert not np.allclose(np.asarray(random(x)[0]), got, atol=1e-3)


def test_a_preset_normalizing_unlike_its_family_is_refused(tmp_path):
    _save_preset("clip", str(tmp_path / "clip"), converter_scale=1 / 255)
    with pytest.raises(UserError, match="normalizes pixels"):
        features.extractor(f"keras_hub:{tmp_path / 'clip'}", "imagenet", None, ["block_3"])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"class_name": "BertBackbone"}))
    with pytest.raises(UserError, match="is a BertBackbone"):
        features.extractor(f"keras_hub:{tmp_path / 'other'}", "imagenet", None)


def test_search_offers_class_token_sets():
    store_blocks = [features.PAPER_BLOCK] + [f"block_{k}:{p}" for k in (4, 5, 6)
                                             for p in features.TOKEN_POOLS]
    layers = ["block_4", "block_5", "block_6"]
    fast = grids._block_sets(store_blocks, layers, wide=False)
    assert fast[0] == tuple(f"block_{k}:{p}" for k in (5, 6) for p in ("cls", "avg", "max"))
    wide = grids._block_sets(store_blocks, layers, wide=True)
    assert ("block_4:cls", "block_5:cls", "block_6:cls") in wide
    no_cls = [b for b in store_blocks if not b.endswith(":cls")]  # SigLIP, or a CNN
    assert all(":cls" not in b for s in grids._block_sets(no_cls, layers, True) for b in s)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One tiny fit per family, in this process (the API; one keras_hub import)."""
    import illustration_tl

    root = tmp_path_factory.mktemp("hubfit")
    images = root / "images"
    for c in ("bird", "flower", "fruit"):
        shutil.copytree(os.path.join(SMALL, c), images / c)
    runs = {}
    for family in FAMILIES:
        # one family passes hub_config as JSON text, as --hub_config does
        config = json.dumps(CONFIGS[family]) if family == "clip" else CONFIGS[family]
        out = root / family
        # DINOv2 with every block as a transfer layer (--layers), the others the defaults
        layers = ("block_1", "block_2", "block_3") if family == "dinov2" else ()
        illustration_tl.fit(str(images), output=str(out), backbone=f"keras_hub:{family}",
                            weights=None, image_size=SIZE, hub_config=config, layers=layers,
                            resize_modes=("squash",), flip=False)
        runs[family] = out
    return root, runs


@pytest.mark.parametrize("family", FAMILIES)
def test_fit_exports_a_model_that_load_predicts_as_evaluated(fitted, family):
    import illustration_tl
    from illustration_tl.evaluation.metrics import EvalResult

    root, runs = fitted
    out = runs[family]
    assert (out / "model" / "saved_model.pb").is_file() and (out / "report.md").is_file()
    board = json.loads((out / "search" / "leaderboard.json").read_text())
    chosen = board["chosen"]["config"]["blocks"]
    assert chosen and all(b.startswith("block_") for b in chosen)
    searched = {tuple(r["config"]["blocks"]) for r in board["results"]}
    if family == "dinov2":  # the last two blocks, and all three
        assert {tuple(f"block_{k}:{p}" for k in ks for p in ("cls", "avg", "max"))
                for ks in ((2, 3), (1, 2, 3))} == searched
    if family != "siglip":  # fast's feature sets include the class tokens
        assert any(b.endswith(":cls") for b in chosen)
    clf = illustration_tl.load(str(out))
    assert clf.metadata["backbone"] == f"keras_hub:{family}" and clf.image_size == SIZE
    ev = EvalResult.load(str(out / "evaluate"))
    files = [os.path.join(root, "images", n) for n in ev.file_names]
    assert files and all(os.path.isfile(f) for f in files), ev.file_names[:3]
    names, probs = clf.predict(files)
    assert probs.shape == (len(files), 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    # the SavedModel (tower rebuilt from the recipe, same seed) gives the probabilities
    # that the evaluate stage computed from the features stage's tower
    np.testing.assert_allclose(probs, ev.scores, atol=1e-4)
    assert names == [clf.class_names[i] for i in ev.scores.argmax(axis=1)]


def test_export_serves_without_keras_hub(fitted):
    """The SavedModel is self-contained: predicting needs no `hub` extra."""
    _, runs = fitted
    bird = os.path.join(SMALL, "bird", sorted(os.listdir(os.path.join(SMALL, "bird")))[0])
    script = textwrap.dedent(f"""
        import sys
        sys.modules["keras_hub"] = None
        import illustration_tl
        names, probs = illustration_tl.load({str(runs["dinov2"])!r}).predict([{bird!r}])
        print("PREDICTED", names[0], round(float(probs.sum()), 4))
    """)
    r = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "PREDICTED" in r.stdout and "1.0" in r.stdout


def test_missing_extra_is_one_line_naming_it(tmp_path):
    script = textwrap.dedent("""
        import sys
        sys.modules["keras_hub"] = None   # as if the hub extra were not installed
        from illustration_tl import cli
        sys.exit(cli.main(sys.argv))
    """)
    r = subprocess.run([sys.executable, "-c", script, "fit", f"--images={SMALL}",
                        f"--output={tmp_path / 'run'}", "--backbone=keras_hub:dinov2_small"],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, (r.stdout, r.stderr[-2000:])
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "KerasHub" in lines[0] and "pip install 'illustration-tl[hub]'" in lines[0]
    assert not (tmp_path / "run").exists()  # refused before any work


def test_a_preset_that_cannot_be_downloaded_is_one_line(tmp_path):
    """Offline (downloads fail through an unreachable proxy): exit 2, one error line that
    names the preset and the way out, no traceback (issue 20)."""
    import shutil
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for c in ("bird", "house"):
        shutil.copytree(os.path.join(root, "tests", "fixtures", "openclipart_small", c),
                        tmp_path / "images" / c)
    unreachable = "http://127.0.0.1:9"
    env = dict(os.environ, HOME=str(tmp_path), KERAS_HOME=str(tmp_path / ".keras"),
               KAGGLEHUB_CACHE=str(tmp_path / "kaggle"), HF_HOME=str(tmp_path / "hf"),
               http_proxy=unreachable, https_proxy=unreachable, HTTP_PROXY=unreachable,
               HTTPS_PROXY=unreachable, no_proxy="", NO_PROXY="",
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", "fit",
                        f"--images={tmp_path / 'images'}", f"--output={tmp_path / 'run'}",
                        "--backbone=keras_hub:dinov2_small", "--num_workers=1"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "'dinov2_small'" in errors[0], r.stderr[-2000:]
    assert "keras_hub:/path/to/preset" in errors[0] and "Traceback" not in r.stderr
