"""``fit``'s ``[eta]`` lines (pipelines/fit_plan.Eta): each stage left is rescaled by the
ratio measured on stages of its own kind, so a search far slower than its estimate (an
approximate search at 30k images) does not multiply the export's fixed cost."""

from types import SimpleNamespace

from illustration_tl.pipelines import fit_plan


def _eta(timings, skipped=()):
    lines = []
    st = SimpleNamespace(timings=timings, skipped=list(skipped), root="/nonexistent",
                         on_done=[])
    eta = fit_plan.Eta(SimpleNamespace(), st, "auto", lines.append)
    eta.estimate = {"dataset": 5.0, "features": 100.0, "search": 10.0, "final": 2.0,
                    "reject": 0.0, "evaluate": 1.0, "model": 20.0}
    return eta, lines


def test_a_slow_search_rescales_the_final_fit_only():
    eta, lines = _eta({"dataset": 5.0, "features": 200.0, "search": 500.0})
    eta.stage_done("search", 500.0)
    # final: 2 s x (500 / 10); reject, evaluate and model unscaled: 0 + 1 + 20
    assert lines[-1].endswith("about 121 s left"), lines


def test_before_any_fit_the_features_rate_rescales_nothing_else():
    eta, lines = _eta({"dataset": 5.0, "features": 300.0})
    eta.stage_done("features", 300.0)
    assert lines[-1].endswith(f"about {10 + 2 + 0 + 1 + 20} s left"), lines


def test_skipped_stages_do_not_count_as_measured():
    eta, lines = _eta({"dataset": 5.0, "features": 3.0, "search": 40.0}, skipped=["features"])
    eta.stage_done("search", 40.0)
    assert lines[-1].endswith(f"about {2 * 4 + 0 + 1 + 20} s left"), lines


def _cfg(**kw):
    base = dict(resize_modes=("squash", "pad"), mode_sample=1024, flip=True, scales=(),
                folds=3)
    return SimpleNamespace(**{**base, **kw})


MEASURED = {"seconds_per_fit": 0.5, "seconds_per_image": 0.1, "configurations": 10,
            "image_size": 224}
EXAMPLES = {"train": 2600, "validation": 650, "test": 800}


def test_the_estimate_lists_this_runs_stages_and_counts_every_pass():
    est = fit_plan.estimate(_cfg(scales=(224, 320)), "auto", EXAMPLES, MEASURED)
    assert list(est) == ["dataset", "modes", "features", "features_320", "search", "scales",
                         "final", "reject", "evaluate", "model"]
    # the sample in both modes, the rest in the chosen one: 2 views each
    assert est["modes"] + est["features"] >= 0.1 * 2 * (4050 + 1024)
    assert est["features"] == 0.1 * 2 * (4050 - 1024)
    # 320 px: every image once per view in the chosen mode, at (320/224)^2 the cost
    assert est["features_320"] == 0.1 * 2 * 4050 * (320 / 224) ** 2
    assert est["scales"] == 0.5 * 3 and est["final"] == 0.5 * 3 * 2


def test_without_sample_or_scales_the_stages_are_as_before():
    est = fit_plan.estimate(_cfg(mode_sample=0), "auto", EXAMPLES, MEASURED)
    assert tuple(est) == fit_plan.STAGES
    assert est["features"] == 0.1 * 4050 * 2 * 2


def test_an_extra_scale_is_rescaled_by_the_measured_extraction_rate():
    eta, lines = _eta({"dataset": 5.0, "features": 300.0})
    eta.estimate = {"dataset": 5.0, "features": 100.0, "features_320": 200.0,
                    "search": 10.0, "scales": 1.0, "final": 2.0, "reject": 0.0,
                    "evaluate": 1.0, "model": 20.0}
    eta.stage_done("features", 300.0)
    assert lines[-1].startswith("[eta] 2/9 stages done"), lines
    assert lines[-1].endswith(f"about {600 + 10 + 1 + 2 + 0 + 1 + 20} s left"), lines
