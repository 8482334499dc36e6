"""Config composition, schema and validation."""

from step.config.paths import register_resolvers
from step.config.schema import register_schema

register_resolvers()
register_schema()

from step.config.compose import compose  # noqa: E402
from step.config.validate import validate_config  # noqa: E402

__all__ = ["compose", "validate_config"]
