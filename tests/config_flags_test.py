"""Flags generated from the stages' typed configs: one definition per setting (issue 11)."""

import dataclasses
import subprocess
import sys

import pytest
from absl import flags

from illustration_tl.core import config_flags


@dataclasses.dataclass
class _Config:
    name: str = config_flags.setting("x", "A name.")
    weights: str | None = config_flags.setting("imagenet", "Weights or 'none'.")
    size: int = config_flags.setting(224, "Side.")
    rate: float = config_flags.setting(0.5, "Rate.")
    on: bool = config_flags.setting(False, "Switch.")
    mode: str = config_flags.setting("squash", "Mode.", choices=("squash", "pad"))
    words: tuple[str, ...] = config_flags.setting(("a",), "Words.")
    internal: int = 3  # no help text: not a flag


def test_define_and_values_round_trip_with_types():
    fv = flags.FlagValues()
    holders = config_flags.define(_Config, flag_values=fv)
    assert set(holders) == {"name", "weights", "size", "rate", "on", "mode", "words"}
    fv(["prog", "--size=64", "--rate=0.25", "--on", "--mode=pad", "--words=b,c",
        "--weights=none"])
    cfg = _Config(**config_flags.values(holders, _Config))
    assert cfg == _Config(name="x", weights=None, size=64, rate=0.25, on=True, mode="pad",
                          words=("b", "c"))
    assert fv["size"].help == "Side." and fv["mode"].default == "squash"


def test_enum_choices_and_command_defaults():
    fv = flags.FlagValues()
    holders = config_flags.define(_Config, only=["mode", "weights"],
                                  defaults={"weights": "auto"}, flag_values=fv)
    fv(["prog"])
    assert config_flags.values(holders, _Config) == {"mode": "squash", "weights": "auto"}
    with pytest.raises(flags.IllegalFlagValueError):
        fv(["prog", "--mode=stretch"])
    with pytest.raises(ValueError, match="no setting"):
        config_flags.define(_Config, only=["nope"], flag_values=flags.FlagValues())


def test_train_config_defaults_are_the_flag_defaults():
    from illustration_tl.training.config import TrainConfig, TrainDataConfig
    from illustration_tl.training.data import tfds_data

    for cls in (TrainConfig, TrainDataConfig):
        fv = flags.FlagValues()
        holders = config_flags.define(cls, flag_values=fv)
        fv(["prog"])
        given = config_flags.values(holders, cls)
        expected = {k: getattr(cls(), k) for k in holders}
        assert given == expected, cls.__name__
    # One shuffle-buffer default, in the config, the flag and tfds_data.
    import inspect

    default = inspect.signature(tfds_data).parameters["shuffle_buffer"].default
    assert default == TrainDataConfig().shuffle_buffer


def _helpfull(command: str) -> str:
    r = subprocess.run([sys.executable, "-m", "illustration_tl.cli", command, "--helpfull"],
                       capture_output=True, text=True, timeout=300)
    return r.stdout + r.stderr


def test_reproduce_accepts_only_flags_that_have_an_effect():
    """The data flags of optimize (which reproduce builds itself) are not reproduce's."""
    text = _helpfull("reproduce")
    for ignored in ("--dataset", "--data_dir", "--train_split", "--validation_split",
                    "--eval_dataset", "--eval_split", "--eval_data_dir", "--shuffle_buffer",
                    "--cache", "--dry_run", "--num_classes"):
        assert f"  {ignored}:" not in text, ignored
    for used in ("--tfds_dir", "--resize_mode", "--strategy", "--reinit_layers",
                 "--lr_multipliers", "--weights"):
        assert f"  {used}:" in text, used
    assert "(default: 'auto')" in text.split("  --weights:")[1].split("  --")[0]


@dataclasses.dataclass
class _Given:
    label: str | None = config_flags.optional("Taken as given.")
    words: tuple[str, ...] | None = config_flags.setting(None, "Words, or unset.")
    mapped: str | None = config_flags.setting(None, "'none' means None.")


def test_literal_settings_keep_none_words_and_default_to_unset():
    fv = flags.FlagValues()
    holders = config_flags.define(_Given, flag_values=fv)
    fv(["prog"])
    # Unset: no flag default to read back but None; a mapped optional shows 'none'.
    assert fv["label"].default is None and fv["words"].default is None
    assert fv["mapped"].default == "none" and "list" in fv["words"].flag_type()
    assert config_flags.values(holders, _Given) == {"label": None, "words": None,
                                                    "mapped": None}
    fv.unparse_flags()
    fv(["prog", "--label=none", "--words=a,b", "--mapped=none"])
    assert config_flags.values(holders, _Given) == {"label": "none", "words": ("a", "b"),
                                                    "mapped": None}
    fv.unparse_flags()
    fv(["prog", "--label=", "--words=", "--mapped=x"])
    assert config_flags.values(holders, _Given) == {"label": "", "words": (), "mapped": "x"}


def _stage_configs():
    from illustration_tl.evaluation import metrics as evaluation
    from illustration_tl.evaluation import report
    from illustration_tl.features import embeddings
    from illustration_tl.heads import svm
    from illustration_tl.pipelines import class_selection
    from illustration_tl.pipelines import fit as fitting
    from illustration_tl.serving import export, grouped_evaluation, predict

    return [embeddings.EmbedConfig, svm.SvmConfig, export.ExportConfig, predict.PredictConfig,
            evaluation.BaselineConfig, grouped_evaluation.EvaluateConfig, fitting.FitConfig,
            report.ReportConfig, class_selection.SelectClassesConfig]


# Config fields that are not flags (a library setting the command does not expose).
NOT_FLAGS = {"FitConfig": {"top_k"}}


@pytest.mark.parametrize("cls", _stage_configs(), ids=lambda c: c.__name__)
def test_stage_config_defaults_are_the_flag_defaults(cls):
    fv = flags.FlagValues()
    holders = config_flags.define(cls, flag_values=fv)
    fv(["prog"])
    names = {f.name for f in dataclasses.fields(cls)}
    assert set(holders) == names - NOT_FLAGS.get(cls.__name__, set())
    # A field without a default (FitConfig.images) reads None until its flag is given.
    expected = {f.name: None if f.default is dataclasses.MISSING else f.default
                for f in dataclasses.fields(cls) if f.name in holders}
    assert config_flags.values(holders, cls) == expected


def test_a_setting_can_name_its_flag_and_be_required():
    from illustration_tl.pipelines.fit import FitConfig

    fv = flags.FlagValues()
    holders = config_flags.define(FitConfig, flag_values=fv)
    assert "cv_folds" in fv and "folds" not in fv and fv["images"].default is None
    fv(["prog", "--images=pics", "--output=out", "--cv_folds=5", "--weights=none",
        "--resize_modes=pad"])
    cfg = FitConfig(**config_flags.values(holders, FitConfig))
    assert (cfg.images, cfg.output, cfg.folds, cfg.weights) == ("pics", "out", 5, "none")
    assert cfg.resize_modes == ("pad",) and cfg.top_k == 5


def test_shared_settings_read_the_same_in_every_stage_config():
    """A setting from common_settings has one help text, whichever config declares it."""
    helps: dict[str, set[str]] = {}
    for cls in _stage_configs():
        for field in config_flags.fields(cls).values():
            if (cls.__name__, field.name) == ("FitConfig", "backbone"):
                continue  # fit also takes KerasHub towers: its own text
            helps.setdefault(config_flags.flag_name(field), set()).add(field.metadata["help"])
    for name in ("backbone", "weights", "image_size", "layer", "model_dir", "batch_size",
                 "data_dir", "splits", "include_top", "resize_mode", "model", "cv_folds"):
        assert len(helps[name]) == 1, (name, helps[name])


def test_export_passes_model_flags_on_as_given():
    """export: None = not given (read from the SVM's record); 'none' weights = random."""
    from illustration_tl.serving.export import ExportConfig

    fv = flags.FlagValues()
    holders = config_flags.define(ExportConfig, flag_values=fv)
    fv(["prog", "--weights=none", "--output=out"])
    cfg = ExportConfig(**config_flags.values(holders, ExportConfig))
    assert cfg.weights == "none" and cfg.backbone is None and cfg.image_size is None
    assert cfg.layer is None and cfg.svm_dir is None and cfg.output == "out"


def test_svm_config_builds_the_grid_the_flags_name():
    from illustration_tl.heads.svm import SvmConfig

    fv = flags.FlagValues()
    holders = config_flags.define(SvmConfig, flag_values=fv)
    fv(["prog"])
    cfg = SvmConfig(**config_flags.values(holders, SvmConfig))
    assert len(cfg.candidates()) == 64 and cfg.precompute() is None  # the paper's grid
    fv.unparse_flags()
    fv(["prog", "--kernel=rbf", "--C=1", "--gamma=1e-4", "--multiclass=ovo",
        "--precompute_kernels=no"])
    cfg = SvmConfig(**config_flags.values(holders, SvmConfig))
    (point,) = cfg.candidates()
    assert (point.kernel, point.C, point.gamma, point.multiclass) == ("rbf", 1.0, 1e-4, "ovo")
    assert cfg.precompute() is False
