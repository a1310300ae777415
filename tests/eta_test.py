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
