"""The model zoo: ``zoo.load(name)`` under either profile, ``zoo.model_card(name)`` for what the
book says about a model, and ``python -m fashionlab.zoo {train,export,verify,list}``."""

from .loaders import load, verify_all
from .registry import list_models, model_card

__all__ = ["load", "model_card", "list_models", "verify_all"]
