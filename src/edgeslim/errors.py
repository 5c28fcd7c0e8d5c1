"""Exceptions raised by edgeslim. Each message says what was wrong and what to do."""


class EdgeslimError(Exception):
    """Base class for every error edgeslim raises on purpose."""


class DataError(EdgeslimError):
    """A data file or data set is missing, truncated or malformed."""


class ConfigError(EdgeslimError, ValueError):
    """A configuration value is invalid."""


class CheckpointError(EdgeslimError):
    """A checkpoint folder is missing files or does not match its model."""


class ArtifactError(EdgeslimError):
    """A model file failed verification (hash, signature, format)."""


# ---- pydantic validation errors as one line naming the field (no pydantic import: runtime-safe) ----

_FRIENDLY = {"less_than": "must be < {lt}", "less_than_equal": "must be <= {le}",
             "greater_than": "must be > {gt}", "greater_than_equal": "must be >= {ge}",
             "extra_forbidden": "unknown field (check the spelling)", "missing": "field required",
             "int_type": "must be an integer, got {input!r}", "float_type": "must be a number, got {input!r}",
             "bool_type": "must be true or false, got {input!r}", "string_type": "must be a string, got {input!r}",
             "int_from_float": "must be an integer, got {input!r}",
             "int_parsing": "must be an integer, got {input!r}", "float_parsing": "must be a number, got {input!r}"}


def _field_path(loc: tuple, union_tags: frozenset[str]) -> str:
    """('stages', 1, 'prune', 'config', 'structured', 'sparsity') -> 'stages[1].sparsity': a union tag
    at the start, after an index or after a stage's ``config`` (which YAML writes flat) is noise."""
    out, after_index = "", True
    for part in loc:
        if isinstance(part, int):
            out, after_index = out + f"[{part}]", True
            continue
        if after_index and part in union_tags:
            continue  # nested unions (stage type, then method) each add a tag
        if after_index and part == "config" and out:
            continue
        after_index = False
        out += f".{part}" if out else str(part)
    return out


def _problem(err: dict) -> str:
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    ctx = {**err.get("ctx", {}), "input": err.get("input")}
    if err["type"] in _FRIENDLY:
        try:
            msg = _FRIENDLY[err["type"]].format(**ctx)
        except (KeyError, IndexError):
            pass
    if err["type"] == "union_tag_invalid":
        what = "stage type" if ctx.get("discriminator") == "'type'" else "method"
        msg = f"unknown {what} {ctx.get('tag')!r}; use one of {ctx.get('expected_tags')}"
    return msg


def validation_message(error: Exception, source: str, union_tags: tuple[str, ...] = ()) -> str:
    """A pydantic ``ValidationError`` as one line: ``invalid <source>: field: problem; ...``.
    ``source`` says what was validated ("recipe r.yaml", "train option"...)."""
    tags = frozenset(union_tags)
    parts = []
    for err in error.errors():  # type: ignore[attr-defined]
        where = _field_path(tuple(err["loc"]), tags)
        parts.append(f"{where}: {_problem(err)}" if where else _problem(err))
    return f"invalid {source}: " + "; ".join(parts)


def config_error(error: Exception, source: str, union_tags: tuple[str, ...] = ()) -> ConfigError:
    """``validation_message`` as a ConfigError (``raise config_error(e, "train option") from None``)."""
    return ConfigError(validation_message(error, source, union_tags))


class MissingExtraError(EdgeslimError, ImportError):
    """A model format needs an optional package that is not installed (the message names the extra)."""
