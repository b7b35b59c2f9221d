"""Dataset loaders and corruptions. Every loader returns :class:`influence_core.data.base.Dataset`."""

from influence_core.data.base import Dataset

__all__ = ["Dataset"]
