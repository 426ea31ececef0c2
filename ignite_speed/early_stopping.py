"""Placeholder: replaced by the early-stopping issue."""
from typing import Any


def validate_early_stopping_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return kwargs
