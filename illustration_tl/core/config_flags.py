"""Absl flags generated from a stage's typed config: one definition per setting.

A stage's settings live in one dataclass (``training.config.TrainConfig``,
``training.config.TrainDataConfig``, ...). Each field is declared with :func:`setting`,
which carries its default, its help text and, for enumerations, its choices.
A command turns the fields it exposes into absl flags with :func:`define` and
reads them back into the dataclass with :func:`values`, so a setting has one
name, one default and one help text wherever it appears::

    @dataclasses.dataclass
    class EmbedConfig:
        batch_size: int = config_flags.setting(32, "Images per batch.")

    FLAGS = config_flags.define(EmbedConfig)            # in commands/embed.py
    cfg = EmbedConfig(**config_flags.values(FLAGS))     # in its main()

Settings shared by several stages (``data_dir``, ``backbone``, ``batch_size``, ...)
are declared once in :mod:`common_settings`.

An optional setting (``str | None``) is None when its flag says ``none`` or is empty
(``--weights=none``), unless it is declared ``literal`` (:func:`optional` is): then
every text is passed on as given and None means only that the flag was not given,
e.g. ``export --backbone`` (unset: read from the SVM's record).

A setting may declare its valid range (``minimum=``, ``items=`` for a list's
elements, or a ``check=`` function): :func:`values` refuses a value out of range in
one line naming the flag (:class:`UserError`, exit 2) before the command does any
work, and :func:`check` does the same for a config built in Python (the API).

Presets stay flagfiles (``--preset=NAME``).
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from typing import Any, Callable, Iterable, Sequence

from absl import flags

from illustration_tl.errors import UserError

__all__ = ["setting", "optional", "required", "define", "values", "fields", "flag_name",
           "check", "check_value"]

NONE_WORDS = ("", "none")
"""Flag values that mean None for an optional setting (``--weights=none``)."""


def setting(default: Any, help: str, *, choices: Sequence[str] | None = None,
            literal: bool = False, flag: str | None = None, minimum: float | None = None,
            items: Sequence[str] | None = None,
            check: Callable[[Any], str | None] | None = None) -> Any:
    """A dataclass field with its flag's help text (and choices, for an enum flag).

    ``literal``: for an optional setting, ``none`` and the empty text are values like
    any other (passed on as given); None means only that the flag was not given.
    ``flag``: the flag's name when it is not the field's (``FitConfig.folds`` is
    ``--cv_folds``).
    ``minimum``: the smallest valid number (None, for an optional setting, is valid).
    ``items``: a list setting's allowed elements (it must also hold at least one).
    ``check``: ``value -> None`` if valid, else the fix, e.g. ``"give -1 or more"``.
    """
    metadata = {"help": help, "choices": tuple(choices) if choices else None,
                "literal": literal, "flag": flag, "minimum": minimum,
                "items": tuple(items) if items else None, "check": check}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for a sequence setting")
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def optional(help: str, *, choices: Sequence[str] | None = None,
             minimum: float | None = None) -> Any:
    """A setting that is None unless its flag is given (then taken as given)."""
    return setting(None, help, choices=choices, literal=True, minimum=minimum)


def required(help: str) -> Any:
    """A dataclass field without a default (the library needs it); its flag's default is
    None, so a command reads None when it is not given and says the flag is required."""
    return setting(dataclasses.MISSING, help, literal=True)


def flag_name(field: dataclasses.Field) -> str:
    """The flag of a field declared with :func:`setting`."""
    return field.metadata.get("flag") or field.name


def fields(cls: type) -> dict[str, dataclasses.Field]:
    """The fields of ``cls`` that carry a help text (those :func:`define` can expose)."""
    return {f.name: f for f in dataclasses.fields(cls) if "help" in f.metadata}


def _kind(cls: type, name: str) -> tuple[type, bool]:
    """(base type, optional) of field ``name``: ``str | None`` is (str, True)."""
    hint = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))[name]
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    optional = False
    if origin in (typing.Union, types.UnionType):
        base = [a for a in args if a is not type(None)]
        hint, optional = base[0], len(base) < len(args)
    if typing.get_origin(hint) is tuple or hint is tuple:
        return tuple, optional
    return hint, optional


def _whole_numbers(cls: type, name: str, value: tuple) -> tuple:
    """A ``tuple[int, ...]`` field's flag items (text) as ints, when they all are
    whole numbers; else as given, for the field's ``check`` to name the fix."""
    hint = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))[name]
    if typing.get_args(hint)[:1] != (int,):
        return value
    try:
        return tuple(int(v) for v in value)
    except ValueError:
        return value


def define(cls: type, *, only: Iterable[str] | None = None, exclude: Iterable[str] = (),
           defaults: dict[str, Any] | None = None,
           flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, flags.FlagHolder]:
    """Defines one absl flag per field of ``cls`` (those with :func:`setting` metadata).

    Args:
      cls: the stage's config dataclass.
      only: expose just these fields (default: all with a help text).
      exclude: fields the command sets itself.
      defaults: a command's own default for a field (e.g. ``reproduce``'s
        ``--weights=auto``), documented in its help text as the default.
      flag_values: the registry (tests pass their own).

    Returns:
      field name (not the flag's, where they differ) -> flag holder, for
      :func:`values`. The flags are registered as key flags of the calling module,
      so ``--helpshort`` lists them.
    """
    module = sys._getframe(1).f_globals.get("__name__", __name__)
    chosen = fields(cls)
    if only is not None:
        only = list(only)
        unknown = [n for n in only if n not in chosen]
        if unknown:
            raise ValueError(f"{cls.__name__} has no setting(s) {unknown}")
        chosen = {n: chosen[n] for n in only}
    defaults = defaults or {}
    holders = {}
    for name, field in chosen.items():
        if name in set(exclude):
            continue
        kind, optional = _kind(cls, name)
        default = defaults.get(name, field.default)
        if default is dataclasses.MISSING:
            default = None
        text = field.metadata["help"]
        flag = flag_name(field)
        kw = {"flag_values": flag_values, "module_name": module}
        choices = field.metadata.get("choices")
        if choices:
            holder = flags.DEFINE_enum(flag, default, list(choices), text, **kw)
        elif kind is bool:
            holder = flags.DEFINE_bool(flag, default, text, **kw)
        elif kind is int:
            holder = flags.DEFINE_integer(flag, default, text, **kw)
        elif kind is float:
            holder = flags.DEFINE_float(flag, default, text, **kw)
        elif kind is tuple:
            holder = flags.DEFINE_list(flag, None if default is None else list(default),
                                       text, **kw)
        elif optional and default is None and not field.metadata.get("literal"):
            holder = flags.DEFINE_string(flag, "none", text, **kw)  # --NAME=none is the default
        else:
            holder = flags.DEFINE_string(flag, default, text, **kw)
        holders[name] = holder
    return holders


def values(holders: dict[str, flags.FlagHolder], cls: type | None = None) -> dict[str, Any]:
    """The settings the flags hold, typed as the dataclass fields are (lists -> tuples;
    ``none`` or empty -> None for an optional setting that is not literal, when ``cls``
    is given)."""
    literal = {n for n, f in fields(cls).items() if f.metadata.get("literal")} if cls else ()
    out = {}
    for name, holder in holders.items():
        value = holder.value
        if isinstance(value, list):
            value = tuple(value)
            if cls is not None:
                value = _whole_numbers(cls, name, value)
        if cls is not None and isinstance(value, str) and value.lower() in NONE_WORDS:
            if _kind(cls, name)[1] and name not in literal:
                value = None
        out[name] = value
    if cls is not None:
        chosen = fields(cls)
        for name, value in out.items():
            if name in chosen:
                check_value(chosen[name], value)
    return out


def _shown(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def check_value(field: dataclasses.Field, value: Any) -> None:
    """Raises :class:`UserError` (``--flag=value: the fix``) if ``value`` is out of the
    range ``field`` declares (:func:`setting`'s ``minimum``, ``items``, ``check``)."""
    meta = field.metadata
    problem = None
    minimum, items, fn = meta.get("minimum"), meta.get("items"), meta.get("check")
    if value is None:
        return
    if minimum is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problem = f"give a number (at least {minimum:g})"
        elif value < minimum:
            problem = f"give at least {minimum:g}"
    if problem is None and items is not None:
        chosen = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        bad = [v for v in chosen if v not in items]
        if not chosen or bad:
            problem = (f"{bad[0]!r} is not one of " if bad else "give at least one of ") + \
                ", ".join(items)
    if problem is None and fn is not None:
        problem = fn(value)
    if problem:
        raise UserError(f"--{flag_name(field)}={_shown(value)}: {problem}")


def check(config: Any) -> None:
    """Checks every setting of a config dataclass built in Python (the API) as the flags
    are checked (:func:`check_value`): the same one-line :class:`UserError`."""
    for name, field in fields(type(config)).items():
        check_value(field, getattr(config, name))
