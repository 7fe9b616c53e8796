"""Parameter schemas and validation: every notebook's parameters pass through here before any compute.

A notebook's `parameters` cell holds flat, typed values (the quick profile's); papermill may replace them
(`-p name value` or `-f configs/<profile>.yaml`). The next cell calls

    >>> P = config.from_namespace(config.BaselineParams, globals())

which checks types, ranges and allowed names and raises one `ParameterError` listing every bad value, naming the
parameter and what is allowed. The same schema validates JupyterLab edits and papermill runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import data as data_module
from . import train as train_module

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# Train-split sizes, known before loading, so an impossible N is refused before anything runs.
TRAIN_SIZES = {"fashion_mnist": 60000, "digits": 1348, "cifar10": 50000}   # imagefolder: counted, see train_size


def train_size(params) -> int:
    """The train split's size: fixed for the built-in datasets, counted on disk (no decoding) for an image folder."""
    if params.dataset != "imagefolder":
        return TRAIN_SIZES[params.dataset]
    from . import imagefolder
    try:
        return imagefolder.train_size(params.data_root or None)
    except data_module.DataNotFoundError as err:
        raise ValueError(str(err)) from None        # pydantic reports ValueErrors as parameter errors


class ParameterError(ValueError):
    """One or more parameters are invalid; the message names each one and what is allowed."""


def profiles() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_profile(name: str) -> dict:
    """The flat parameter dict of `configs/<name>.yaml` (what `papermill -f` reads)."""
    if name not in profiles():
        raise ParameterError(f"profile={name!r} is unknown; allowed values: {', '.join(profiles())}")
    return yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text()) or {}


def pool_size(params) -> int:
    """Training images left once `val_size` is held out of the train split; refuses a holdout that leaves none."""
    total = train_size(params)
    if params.val_size >= total:
        raise ValueError(f"val_size={params.val_size} leaves no training images (dataset={params.dataset!r} has "
                         f"{total}); allowed: val_size below {total}")
    return total - params.val_size


def check_sizes_fit(params, *names: str) -> int:
    """Refuse any N in the named size lists larger than the pool (`pool_size`); returns the pool size."""
    pool = pool_size(params)
    for name in names:
        too_big = [n for n in getattr(params, name) if n != "all" and n > pool]
        if too_big:
            raise ValueError(f"{name} {too_big} exceed the {pool} images left for training "
                             f"(dataset={params.dataset!r}, val_size={params.val_size}); allowed: 1..{pool} or 'all'")
    return pool


def resolve_sizes(sizes, pool: int) -> list[int]:
    """Sizes with 'all' replaced by the pool size, deduplicated and sorted."""
    return sorted({pool if n == "all" else n for n in sizes})


# ---------------------------------------------------------------- one validator per concept
def _sizes(v):
    bad = [n for n in v if n != "all" and n <= 0]
    if bad or len(set(v)) != len(v):
        raise ValueError(f"sizes must be distinct positive integers or 'all', got {v}")
    return v


def _model_name(v):
    from . import models
    if not models.is_model(v):
        if v.startswith("timm:"):
            raise ValueError(f"timm has no model {v[5:]!r}; allowed: timm:<name> for a name in timm.list_models()")
        raise ValueError(f"allowed values: {', '.join(models.available())}")
    return v


def _generator_names(pretrained: bool):
    def check(v):
        from . import generators
        names = [v] if isinstance(v, str) else list(v)
        unknown = [n for n in names if not generators.is_generator(n, pretrained=pretrained)]
        if unknown or len(set(names)) != len(names):
            raise ValueError(f"{unknown or 'a name listed twice'}: allowed values (each once): "
                             f"{', '.join(generators.available(pretrained=pretrained))}")
        return v
    return check


def _steps_per_family(pretrained: bool):
    def check(v):
        from . import generators
        unknown = sorted(n for n in v if not generators.is_generator(n, pretrained=pretrained))
        if unknown:
            raise ValueError(f"unknown generator(s) {unknown}; allowed keys: "
                             f"{', '.join(generators.available(pretrained=pretrained))}")
        bad = {k: n for k, n in v.items() if isinstance(n, bool) or not (isinstance(n, int) and n > 0)}
        if bad:
            raise ValueError(f"steps must be positive integers, got {bad}")
        return v
    return check


def require_steps(budgets: dict, names, field: str, budget_field: str = "gen_steps") -> None:
    """Refuse generators named in `field` that have no training budget in `budget_field`."""
    missing = sorted({n for n in ([names] if isinstance(names, str) else names) if n not in budgets})
    if missing:
        raise ValueError(f"{budget_field} has no entry for {missing}; give every generator in {field} its training "
                         f"steps")


Sizes = Annotated[list[Union[int, Literal["all"]]], AfterValidator(_sizes)]
ModelName = Annotated[str, AfterValidator(_model_name)]
GeneratorName = Annotated[str, AfterValidator(_generator_names(pretrained=True))]
GeneratorNames = Annotated[list[str], AfterValidator(_generator_names(pretrained=True))]
TrainedGeneratorNames = Annotated[list[str], AfterValidator(_generator_names(pretrained=False))]
StepsPerFamily = Annotated[dict[str, int], AfterValidator(_steps_per_family(pretrained=True))]
TrainedStepsPerFamily = Annotated[dict[str, int], AfterValidator(_steps_per_family(pretrained=False))]


class StudyParams(BaseModel):
    """Parameters every notebook shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    dataset: Literal["fashion_mnist", "digits", "cifar10", "imagefolder"]
    allow_download: bool = False
    device: str = "auto"
    seeds: list[int] = Field(min_length=3)
    progress: bool = True
    # dataset=imagefolder and pretrained generators (synthstudy.imagefolder, synthstudy.generators.pretrained)
    data_root: str = ""                       # image folder root; "" = $SYNTHSTUDY_IMAGEFOLDER
    image_size: int = Field(default=64, ge=8)  # image folder images are resized to image_size x image_size
    pretrained_path: str = ""                 # local weights folder; "" = $SYNTHSTUDY_PRETRAINED/<name>, or download
    allow_cpu_pretrained: bool = False        # consent to run a GPU-sized pretrained generator on the CPU

    @model_validator(mode="after")
    def _pretrained_ready(self):
        from . import generators
        generators.check_study_params(self)   # a pretrained generator's classes, weights, device: before any compute
        return self

    @field_validator("device")
    @classmethod
    def _device(cls, v):
        if v not in train_module.DEVICES and not (v.startswith("cuda:") and v[5:].isdigit()):
            raise ValueError(f"allowed values: {', '.join(train_module.DEVICES)}, cuda:<index>")
        try:
            train_module.resolve_device(v)          # cuda / mps asked for on a machine without them: refuse now
        except ValueError as err:
            raise ValueError(str(err)) from None
        return v

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("seeds must be distinct (a repeated seed is the same run twice)")
        return v


class TrainingParams(BaseModel):
    """The classifier recipe shared by every arm (one architecture; a budget that follows N, the same for every arm
    at a given N: `steps_for`)."""

    model: ModelName
    epochs: float = Field(gt=0)           # passes over the N training images ...
    min_steps: int = Field(gt=0)          # ... clipped to [min_steps, max_steps] optimizer steps
    max_steps: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    lr: float = Field(gt=0)
    augment: str
    tta: str = "flip"
    equivalence_margin: float = Field(default=0.01, gt=0, lt=1)   # accuracy difference still called equivalent

    @field_validator("augment", "tta")
    @classmethod
    def _one_of(cls, v, info):
        allowed = {"augment": train_module.AUGMENTATIONS, "tta": train_module.TTA}[info.field_name]
        if v not in allowed:
            raise ValueError(f"allowed values: {', '.join(allowed)}")
        return v

    @model_validator(mode="after")
    def _step_range(self):
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps={self.min_steps} must be <= max_steps={self.max_steps}")
        return self

    def steps_for(self, n: int, factor: int = 1) -> int:
        """The budget of every arm at N training images (`factor` 2: the budget check's doubled run)."""
        return factor * train_module.steps_for_size(n, self.batch_size, self.epochs, self.min_steps, self.max_steps)

    def recipe_key(self) -> dict:
        """The recipe fields of every classifier cell key (the budget rule, not its value: steps go in per cell)."""
        return {"model": self.model, "epochs": self.epochs, "min_steps": self.min_steps, "max_steps": self.max_steps,
                "batch_size": self.batch_size, "lr": self.lr, "augment": self.augment, "tta": self.tta,
                "classifier_version": train_module.CLASSIFIER_VERSION}

    def train_config(self, seed: int, device: str, progress: bool, steps: int) -> train_module.TrainConfig:
        return train_module.TrainConfig(steps=steps, batch_size=self.batch_size, lr=self.lr,
                                        augment=self.augment, tta=self.tta, seed=seed, device=device,
                                        progress=progress)


class BudgetCheck(BaseModel):
    """The real arm's budget check, shared by the notebooks with a real curve (baseline, scaling)."""

    budget_check_sizes: Sizes = Field(default_factory=list)   # N rerun at 2x the budget, scored on validation

    def budget_sizes(self) -> list[int]:
        return resolve_sizes(self.budget_check_sizes, pool_size(self))


class BaselineParams(StudyParams, TrainingParams, BudgetCheck):
    """notebooks/baseline: test accuracy vs the number N of real training images."""

    train_sizes: Sizes = Field(min_length=1)
    val_size: int = Field(ge=1)           # the budget check and every selection score on validation

    @model_validator(mode="after")
    def _sizes_fit(self):
        check_sizes_fit(self, "train_sizes", "budget_check_sizes")
        missing = set(resolve_sizes(self.budget_check_sizes, pool_size(self))) - set(self.resolved_sizes())
        if missing:
            raise ValueError(f"budget_check_sizes {sorted(missing)} are not in train_sizes: the check doubles the "
                             f"budget of cells the grid runs; allowed: a subset of train_sizes")
        return self

    def resolved_sizes(self) -> list[int]:
        return resolve_sizes(self.train_sizes, pool_size(self))


class GeneratorBudgets(BaseModel):
    """The generator training budgets every notebook shares: equal values -> the same cached generator."""

    gen_steps: StepsPerFamily
    gen_seed: int = Field(ge=0)
    val_size: int = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _pretrained_need_no_steps(cls, values):
        from . import generators
        return generators.fill_pretrained_steps(values)   # pretrained generators are not trained: nominal budget 1


class GeneratorsParams(StudyParams, TrainingParams, GeneratorBudgets):
    """notebooks/generators: train the zoo on the full train pool; FID/KID/PRDC and CAS per generator."""

    generator_names: GeneratorNames = Field(min_length=1)
    cas_generators: GeneratorNames | None = None   # the families CAS trains a classifier for (None: all of them)
    quality_samples: int = Field(ge=20)   # PRDC's 5 nearest neighbours and KID's subsets need a real sample
    extractor_steps: int = Field(gt=0)

    def cas_names(self) -> list[str]:
        return list(self.generator_names if self.cas_generators is None else self.cas_generators)

    @model_validator(mode="after")
    def _budgets(self):
        outside = [n for n in (self.cas_generators or []) if n not in self.generator_names]
        if outside:
            raise ValueError(f"cas_generators {outside} are not in generator_names; allowed: a subset of "
                             f"{self.generator_names}")
        require_steps(self.gen_steps, self.generator_names, "generator_names")
        if not 0 < self.val_size < train_size(self):
            raise ValueError(f"val_size={self.val_size}: the quality metrics compare samples with the validation "
                             f"holdout; allowed: 1..{train_size(self) - 1}")
        return self


class ScalingParams(StudyParams, TrainingParams, GeneratorBudgets, BudgetCheck):
    """notebooks/scaling: real vs synthetic (fixed pool, online stream, mixed) training data across N."""

    train_sizes: Sizes = Field(min_length=1)   # the real curve (the baseline's sizes)
    scaling_sizes: Sizes = Field(min_length=1)
    scaling_generators: GeneratorNames = Field(min_length=1)
    pool_multiples: list[int]             # may be empty: no fixed-pool arm
    mix_fractions: list[float]            # may be empty: no mixed arm
    stream: bool = True

    @field_validator("pool_multiples")
    @classmethod
    def _multiples(cls, v):
        if any(m <= 0 for m in v) or len(set(v)) != len(v):
            raise ValueError("pool sizes are M = multiple x N: distinct positive integers")
        return v

    @field_validator("mix_fractions")
    @classmethod
    def _fractions(cls, v):
        # 0 is the real arm and 1 the stream arm, both run anyway: a mix is strictly in between
        if any(not 0 < f < 1 for f in v) or len(set(v)) != len(v):
            raise ValueError("synthetic share of each batch: distinct numbers strictly between 0 and 1")
        return v

    @model_validator(mode="after")
    def _fits(self):
        require_steps(self.gen_steps, self.scaling_generators, "scaling_generators")
        if not (self.pool_multiples or self.stream or self.mix_fractions):
            raise ValueError("no synthetic arm left: give pool_multiples or mix_fractions, or set stream to true")
        check_sizes_fit(self, "train_sizes", "scaling_sizes", "budget_check_sizes")
        return self

    def resolved_sizes(self) -> list[int]:
        """The N of the synthetic arms (each also gets the real arm, for a paired comparison)."""
        return resolve_sizes(self.scaling_sizes, pool_size(self))

    def real_sizes(self) -> list[int]:
        """The N of the real arm: the real curve (train_sizes) plus every synthetic N."""
        return resolve_sizes([*self.train_sizes, *self.resolved_sizes()], pool_size(self))

    def pool_sizes(self, n: int) -> list[int]:
        """Fixed-pool sizes M for N real images: multiple x N, clipped to the images a classifier sees
        (steps_for(n) x batch_size; a larger pool is never fully seen), duplicates dropped. With the stream arm on, a
        pool of exactly that size is dropped too: each of its images is seen once, which is what the stream is
        (the same measurement twice would only cost time)."""
        cap = self.steps_for(n) * self.batch_size
        sizes = {min(m * n, cap) for m in self.pool_multiples}
        return sorted(sizes - {cap} if self.stream else sizes)


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


# ---------------------------------------------------------------- audits notebook
NUM_CLASSES = {"fashion_mnist": 10, "digits": 10, "cifar10": 10}


class AuditsParams(StudyParams, TrainingParams):
    """notebooks/audits: does a generator copy its training images (across N), does it amplify class imbalance?"""

    val_size: int = Field(ge=1)          # the bias audit's per-class precision / recall is measured on it
    gen_steps: TrainedStepsPerFamily
    gen_seed: int = Field(ge=0)
    extractor_steps: int = Field(gt=0)
    contrastive_steps: int = Field(gt=0)  # the second feature space (SimCLR encoder of the pool)
    audit_generators: TrainedGeneratorNames = Field(min_length=1)
    audit_gen_steps: TrainedStepsPerFamily   # generator steps in the N sweep (small N: plateau sooner than the pool)
    audit_sizes: list[int] = Field(min_length=1)
    audit_zoo: TrainedGeneratorNames
    audit_samples: int = Field(gt=0)
    copy_quantile: float = Field(gt=0, le=0.5)
    copy_margin: float = Field(gt=0, lt=1)   # copy excess still called "no excess" (TOST)
    auc_margin: float = Field(gt=0, lt=0.5)  # attack AUC - 0.5 still called "no leak" (TOST)
    bias_generators: TrainedGeneratorNames = Field(min_length=1)
    bias_n: int = Field(gt=0)
    rare_classes: list[int]
    rare_fraction: float = Field(gt=0, le=1)

    @model_validator(mode="after")
    def _audits_fit(self):
        from .audits import bias
        require_steps(self.gen_steps, [*self.audit_zoo, *self.bias_generators], "audit_zoo and bias_generators")
        require_steps(self.audit_gen_steps, self.audit_generators, "audit_generators", "audit_gen_steps")
        pool = pool_size(self)
        # the privacy audit compares the N training images with N held-out pool images the generator never saw
        bad = [n for n in self.audit_sizes if not 2 <= n <= pool // 2]
        if bad or len(set(self.audit_sizes)) != len(self.audit_sizes):
            raise ValueError(f"audit_sizes {bad or self.audit_sizes} invalid: distinct sizes, each needs as many "
                             f"held-out images from the pool of {pool} (dataset={self.dataset!r}, val_size="
                             f"{self.val_size}); allowed: 2..{pool // 2}")
        num_classes = NUM_CLASSES.get(self.dataset) or len(data_module.class_names(self.dataset,
                                                                                   self.data_root or None))
        try:
            bias.check_imbalance(num_classes, self.rare_classes, self.rare_fraction)
        except ValueError as err:
            raise ValueError(str(err)) from None
        if self.bias_n * num_classes > pool:
            raise ValueError(f"bias_n={self.bias_n} images per majority class exceeds what the pool of {pool} "
                             f"holds per class; allowed: 1..{pool // num_classes} (roughly; checked exactly "
                             f"when the data is loaded)")
        return self

    def resolved_sizes(self) -> list[int]:
        return sorted(self.audit_sizes)


# ---------------------------------------------------------------- multiview notebook
class MultiviewParams(StudyParams, GeneratorBudgets):
    """notebooks/multiview: contrastive learning (SimCLR / SupCon) from generated views vs real images."""

    val_size: int = Field(ge=1)            # sigma* and nothing else is chosen on it; the test split is never used so
    model: ModelName
    generator: GeneratorName               # the family giving the views of every synthetic arm
    control_generator: str                 # the family whose class-free path gives the label-free control's views
    mv_steps: int = Field(gt=0)
    mv_batch_size: int = Field(ge=2)       # pairs per step; a pair needs at least one other pair as negatives
    mv_lr: float = Field(gt=0)
    mv_temperature: float = Field(gt=0)
    sigmas: list[float] = Field(min_length=3)   # three at least: an interior optimum needs a point between two ends
    view_noise: Literal["additive", "variance_preserving"]
    latent_truncation: float = Field(ge=0)
    anchor_pools: list[int] = Field(min_length=1)
    mv_probe_size: Union[int, Literal["all"]]
    mv_eval_size: Union[int, Literal["all"]]
    mv_knn_k: int = Field(gt=0)
    equivalence_margin: float = Field(default=0.01, gt=0, lt=1)   # accuracy units: |difference| below it = same
    mv_extra_seeds: list[int] = Field(default_factory=list)      # seeds added for the method table's verdicts only

    @field_validator("control_generator")
    @classmethod
    def _control(cls, v):
        from .contrastive import LABEL_FREE_FAMILIES
        if v not in LABEL_FREE_FAMILIES:
            raise ValueError(f"the label-free control needs a family with a class-free path; allowed values: "
                             f"{', '.join(LABEL_FREE_FAMILIES)}")
        return v

    @field_validator("sigmas")
    @classmethod
    def _sigmas(cls, v):
        # measured in prior standard deviations; beyond 10 an additive neighbour is 10x off the prior and a
        # variance-preserving one is an independent draw (correlation 0.1): nothing left to sweep
        if any(not 0 <= s <= 10 for s in v) or len(set(v)) != len(v):
            raise ValueError(f"sigmas must be distinct numbers in [0, 10] (latent standard deviations; 0 = identical "
                             f"views), got {v}")
        return v

    @field_validator("anchor_pools")
    @classmethod
    def _pools(cls, v):
        if any(m <= 0 for m in v) or len(set(v)) != len(v):
            raise ValueError(f"anchor_pools must be distinct positive integers (unique latents), got {v}")
        return v

    @field_validator("mv_probe_size", "mv_eval_size")
    @classmethod
    def _size(cls, v):
        if v != "all" and v <= 0:
            raise ValueError(f"allowed values: a positive integer or 'all', got {v!r}")
        return v

    @model_validator(mode="after")
    def _fits(self):
        require_steps(self.gen_steps, [self.generator, self.control_generator], "generator and control_generator")
        if set(self.mv_extra_seeds) & set(self.seeds) or len(set(self.mv_extra_seeds)) != len(self.mv_extra_seeds):
            raise ValueError(f"mv_extra_seeds {self.mv_extra_seeds} must be distinct and not in seeds {self.seeds} "
                             f"(a repeated seed is the same run twice)")
        online = self.mv_steps * self.mv_batch_size
        too_big = [m for m in self.anchor_pools if m >= online]
        if too_big:
            raise ValueError(f"anchor_pools {too_big} are not below the {online} anchors an online arm sees "
                             f"(mv_steps x mv_batch_size): such a pool is never seen twice, it is the online arm; "
                             f"allowed: 1..{online - 1}")
        pool = pool_size(self)
        if self.mv_probe_size != "all" and self.mv_probe_size > pool:
            raise ValueError(f"mv_probe_size={self.mv_probe_size} exceeds the {pool} pool images "
                             f"(dataset={self.dataset!r}, val_size={self.val_size}); allowed: 1..{pool} or 'all'")
        return self


# ---------------------------------------------------------------- report notebook
class ReportParams(BaseModel):
    """The report notebook reads run records only: which profile's records, and what it may write."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    publish_figures: bool = True
    update_readme: bool = True
