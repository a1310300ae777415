"""absl flags for the name-to-class mapping options (paper §4.1), shared by
``map-names`` and ``build``."""

from absl import flags

from illustration_tl.datasets import name_mapping

MIN_TOKEN_LENGTH = flags.DEFINE_integer(
    "min_token_length", 1, "Ignore name words shorter than this (paper: no minimum).")
FOLD_PLURALS = flags.DEFINE_bool(
    "fold_plurals", False, "Fold English plurals before matching (umbrellas -> umbrella).")
IGNORE = flags.DEFINE_list(
    "ignore", [], f"Shipped ignore lists to apply: any of {', '.join(name_mapping.IGNORE_LISTS)}.")
IGNORE_WORDS = flags.DEFINE_list("ignore_words", [], "Extra words to ignore, comma-separated.")
PHRASE_MODE = flags.DEFINE_bool(
    "phrase_mode", False, "Require every word of a class synonym (hot-dog stops matching "
    "dog classes; 'traffic light' needs both words). Off = the paper's any-word rule.")


def options() -> name_mapping.MappingOptions:
    """The :class:`MappingOptions` the flags ask for."""
    from illustration_tl.errors import UserError

    bad = [n for n in IGNORE.value if n not in name_mapping.IGNORE_LISTS]
    if bad:
        raise UserError(f"--ignore={','.join(bad)}: unknown list; choose from "
                        f"{', '.join(name_mapping.IGNORE_LISTS)}")
    return name_mapping.MappingOptions.create(
        min_token_length=MIN_TOKEN_LENGTH.value, fold_plurals=FOLD_PLURALS.value,
        ignore=IGNORE.value, extra_ignore_words=IGNORE_WORDS.value,
        phrase_mode=PHRASE_MODE.value)
