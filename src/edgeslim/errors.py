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
