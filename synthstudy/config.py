"""Parameter schemas and validation: every notebook's parameters pass through here before any compute.

A notebook's `parameters` cell holds flat, typed values (the quick profile's); papermill may replace them
(`-p name value` or `-f configs/<profile>.yaml`). The next cell calls

    >>> P = config.from_namespace(config.BaselineParams, globals())

which checks types, ranges and allowed names and raises one `ParameterError` listing every bad value, naming the
parameter and what is allowed. The same schema validates JupyterLab edits and papermill runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import data as data_module
from . import train as train_module

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# Train-split sizes, known before loading, so an impossible N is refused before anything runs.
TRAIN_SIZES = {"fashion_mnist": 60000, "digits": 1348, "cifar10": 50000}


class ParameterError(ValueError):
    """One or more parameters are invalid; the message names each one and what is allowed."""


def profiles() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_profile(name: str) -> dict:
    """The flat parameter dict of `configs/<name>.yaml` (what `papermill -f` reads)."""
    if name not in profiles():
        raise ParameterError(f"profile={name!r} is unknown; allowed values: {', '.join(profiles())}")
    return yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text()) or {}


class StudyParams(BaseModel):
    """Parameters every notebook shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    dataset: Literal["fashion_mnist", "digits", "cifar10"]
    allow_download: bool = False
    device: str = "auto"
    seeds: list[int] = Field(min_length=3)
    progress: bool = True
    publish_figures: bool = True

    @field_validator("device")
    @classmethod
    def _device(cls, v):
        if v not in train_module.DEVICES and not (v.startswith("cuda:") and v[5:].isdigit()):
            raise ValueError(f"allowed values: {', '.join(train_module.DEVICES)}, cuda:<index>")
        return v

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("seeds must be distinct (a repeated seed is the same run twice)")
        return v


class TrainingParams(BaseModel):
    """The classifier recipe shared by every arm (one architecture, one budget)."""

    model: str
    steps: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    lr: float = Field(gt=0)
    augment: str
    tta: str = "flip"

    @field_validator("model")
    @classmethod
    def _model(cls, v):
        from .models import available, _REGISTRY
        if v not in _REGISTRY and not v.startswith("timm:"):
            raise ValueError(f"allowed values: {', '.join(available())}")
        return v

    @field_validator("augment", "tta")
    @classmethod
    def _one_of(cls, v, info):
        allowed = {"augment": train_module.AUGMENTATIONS, "tta": train_module.TTA}[info.field_name]
        if v not in allowed:
            raise ValueError(f"allowed values: {', '.join(allowed)}")
        return v

    def train_config(self, seed: int, device: str, progress: bool) -> train_module.TrainConfig:
        return train_module.TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                                        augment=self.augment, tta=self.tta, seed=seed, device=device,
                                        progress=progress)


class BaselineParams(StudyParams, TrainingParams):
    """notebooks/baseline: test accuracy vs the number N of real training images."""

    train_sizes: list[Union[int, Literal["all"]]] = Field(min_length=1)
    val_size: int = Field(ge=0)

    @field_validator("train_sizes")
    @classmethod
    def _positive_sizes(cls, v):
        bad = [n for n in v if n != "all" and n <= 0]
        if bad:
            raise ValueError(f"sizes must be positive integers or 'all', got {bad}")
        return v

    @model_validator(mode="after")
    def _sizes_fit(self):
        pool = TRAIN_SIZES[self.dataset] - self.val_size
        if pool <= 0:
            raise ValueError(f"val_size={self.val_size} leaves no training images "
                             f"(dataset={self.dataset!r} has {TRAIN_SIZES[self.dataset]}); allowed: 0..{TRAIN_SIZES[self.dataset] - 1}")
        too_big = [n for n in self.train_sizes if n != "all" and n > pool]
        if too_big:
            raise ValueError(f"train_sizes {too_big} exceed the {pool} images left for training "
                             f"(dataset={self.dataset!r}, val_size={self.val_size}); allowed: 1..{pool} or 'all'")
        return self

    def resolved_sizes(self) -> list[int]:
        pool = TRAIN_SIZES[self.dataset] - self.val_size
        return sorted({pool if n == "all" else n for n in self.train_sizes})


def _format(err: ValidationError, schema: type[BaseModel], given: dict) -> str:
    lines = [f"invalid parameters for {schema.__name__}:"]
    for e in err.errors():
        name = ".".join(str(p) for p in e["loc"]) or "(combination)"
        value = given.get(e["loc"][0]) if e["loc"] else None
        got = f" (got {value!r})" if e["loc"] else ""
        lines.append(f"  - parameter '{name}': {e['msg'].removeprefix('Value error, ')}{got}")
    return "\n".join(lines)


def validate(schema: type[BaseModel], params: dict):
    """Validate a dict against a schema; unknown names and bad values raise ParameterError (all at once)."""
    try:
        return schema(**params)
    except ValidationError as err:
        raise ParameterError(_format(err, schema, params)) from None


def from_namespace(schema: type[BaseModel], namespace: dict):
    """Pick the schema's fields out of a notebook's globals() and validate them."""
    missing = [name for name, f in schema.model_fields.items() if name not in namespace and f.is_required()]
    if missing:
        raise ParameterError(f"the parameters cell does not define {missing} (needed by {schema.__name__})")
    return validate(schema, {name: namespace[name] for name in schema.model_fields if name in namespace})
