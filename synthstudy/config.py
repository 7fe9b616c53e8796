"""Parameter schemas and validation: every notebook's parameters pass through here before any compute.

A notebook's `parameters` cell holds flat, typed values (the quick profile's); papermill may replace them
(`-p name value` or `-f configs/<profile>.yaml`). The next cell calls

    >>> P = config.from_namespace(config.BaselineParams, globals())

which checks types, ranges and allowed names and raises one `ParameterError` listing every bad value, naming the
parameter and what is allowed. The same schema validates JupyterLab edits and papermill runs.

Layout: one annotated type per concept (`Sizes`, `ModelName`, `GeneratorNames`, ...: the check lives in the type,
so every schema checks a field the same way), the blocks notebooks share (`StudyParams`, `TrainingParams`,
`RealCurve`, `GeneratorBudgets`), then one schema per notebook. Dataset facts come from `data`, names from the
model and generator registries.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import contrastive, data, generators, models
from . import train as train_module

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ParameterError(ValueError):
    """One or more parameters are invalid; the message names each one and what is allowed."""


def profiles() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_profile(name: str) -> dict:
    """The flat parameter dict of `configs/<name>.yaml` (what `papermill -f` reads)."""
    if name not in profiles():
        raise ParameterError(f"profile={name!r} is unknown; allowed values: {', '.join(profiles())}")
    return yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text()) or {}


def validate(schema: type[BaseModel], params: dict):
    """Validate a dict against a schema; unknown names and bad values raise ParameterError (all at once)."""
    try:
        return schema(**params)
    except ValidationError as err:
        lines = [f"invalid parameters for {schema.__name__}:"]
        for e in err.errors():
            name = ".".join(str(p) for p in e["loc"]) or "(combination)"
            got = f" (got {params.get(e['loc'][0])!r})" if e["loc"] else ""
            lines.append(f"  - parameter '{name}': {e['msg'].removeprefix('Value error, ')}{got}")
        raise ParameterError("\n".join(lines)) from None


def from_namespace(schema: type[BaseModel], namespace: dict):
    """Pick the schema's fields out of a notebook's globals() and validate them."""
    missing = [name for name, f in schema.model_fields.items() if name not in namespace and f.is_required()]
    if missing:
        raise ParameterError(f"the parameters cell does not define {missing} (needed by {schema.__name__})")
    return validate(schema, {name: namespace[name] for name in schema.model_fields if name in namespace})


def pool_size(params) -> int:
    """Training images left once `val_size` is held out of the train split; refuses a holdout that leaves none."""
    try:
        total = data.train_size(params.dataset, params.data_root or None)
    except data.DataNotFoundError as err:
        raise ValueError(str(err)) from None        # pydantic reports ValueErrors as parameter errors
    if params.val_size >= total:
        raise ValueError(f"val_size={params.val_size} leaves no training images (dataset={params.dataset!r} has "
                         f"{total}); allowed: val_size below {total}")
    return total - params.val_size


# ---------------------------------------------------------------- one annotated type per concept
def _as_list(v) -> list:
    return v if isinstance(v, list) else [v]


def _rule(ok, allowed: str) -> AfterValidator:
    """A value passing `ok`, or a list of distinct ones; the message names what is allowed."""
    def check(v):
        items = _as_list(v)
        bad = [x for x in items if not ok(x)]
        if bad and not isinstance(v, list):
            raise ValueError(f"allowed values: {allowed}")
        if bad or len(set(items)) != len(items):
            raise ValueError(f"{bad}: allowed values (each once): {allowed}" if bad else
                             f"values must be distinct; allowed values (each once): {allowed}")
        return v
    return AfterValidator(check)


def _one_of(allowed, why: str = "") -> AfterValidator:
    return _rule(lambda v: v in allowed, why + ", ".join(allowed))


def _generators(pretrained: bool) -> AfterValidator:
    """Registered generator families (the pretrained adapters too, if `pretrained`)."""
    return _one_of(generators.available(pretrained=pretrained))


def _device(v):
    if v not in train_module.DEVICES and not (v.startswith("cuda:") and v[5:].isdigit()):
        raise ValueError(f"allowed values: {', '.join(train_module.DEVICES)}, cuda:<index>")
    train_module.resolve_device(v)          # cuda / mps asked for on a machine without them: refused now
    return v


def _model_name(v):
    if models.is_model(v):
        return v
    if v.startswith("timm:"):
        raise ValueError(f"timm has no model {v[5:]!r}; allowed: timm:<name> for a name in timm.list_models()")
    raise ValueError(f"allowed values: {', '.join(models.available())}")


# Marks a size field ('all' = the pool) whose every N must fit in the pool: StudyParams checks them all at once.
FITS_POOL = "fits the pool"

Profile = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]
Device = Annotated[str, AfterValidator(_device)]
_DISTINCT_SEEDS = _rule(lambda s: True, "integers (a repeated seed is the same run twice)")
Seeds = Annotated[list[int], Field(min_length=3), _DISTINCT_SEEDS]
_SIZES = _rule(lambda n: n == "all" or n > 0, "positive integers or 'all'")
Size = Annotated[Union[int, Literal["all"]], _SIZES]
Sizes = Annotated[list[Union[int, Literal["all"]]], _SIZES, FITS_POOL]
Multiples = Annotated[list[int], _rule(lambda m: m > 0, "positive integers")]
Margin = Annotated[float, Field(gt=0, lt=1)]     # a difference (accuracy, share) still called "the same" (TOST)
ModelName = Annotated[str, AfterValidator(_model_name)]
GeneratorName = Annotated[str, _generators(pretrained=True)]
GeneratorNames = Annotated[list[str], _generators(pretrained=True)]
TrainedGeneratorNames = Annotated[list[str], _generators(pretrained=False)]
Steps = Annotated[int, Field(gt=0)]
StepsPerFamily = dict[GeneratorName, Steps]
TrainedStepsPerFamily = dict[Annotated[str, _generators(pretrained=False)], Steps]


# ---------------------------------------------------------------- blocks the notebooks share
class StudyParams(BaseModel):
    """Parameters every notebook shares: the data, its validation holdout, the seeds, where to compute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: Profile
    dataset: Literal[data.DATASETS]
    val_size: int = Field(ge=1)             # held out of train: every selection, budget check, quality reference
    allow_download: bool = False
    device: Device = "auto"
    seeds: Seeds
    progress: bool = True
    equivalence_margin: Margin = 0.01       # accuracy difference still called equivalent
    # dataset=imagefolder and pretrained generators (synthstudy.imagefolder, synthstudy.generators.pretrained)
    data_root: str = ""                       # image folder root; "" = $SYNTHSTUDY_IMAGEFOLDER
    image_size: int = Field(default=64, ge=8)  # image folder images are resized to image_size x image_size
    pretrained_path: str = ""                 # local weights folder; "" = $SYNTHSTUDY_PRETRAINED/<name>, or download
    allow_cpu_pretrained: bool = False        # consent to run a GPU-sized pretrained generator on the CPU

    @model_validator(mode="after")
    def _ready(self):
        self._check_sizes_fit()
        generators.check_study_params(self)   # a pretrained generator's classes, weights, device: before any compute
        return self

    def _check_sizes_fit(self) -> None:
        """Refuse a holdout that leaves no training images, and any N of a FITS_POOL field larger than the pool."""
        pool = pool_size(self)
        for name in [name for name, info in type(self).model_fields.items() if FITS_POOL in info.metadata]:
            too_big = [n for n in _as_list(getattr(self, name)) if n != "all" and n > pool]
            if too_big:
                raise ValueError(f"{name} {too_big} exceed the {pool} images left for training (dataset="
                                 f"{self.dataset!r}, val_size={self.val_size}); allowed: 1..{pool} or 'all'")

    def resolve(self, sizes) -> list[int]:
        """Sizes with 'all' replaced by the pool size, deduplicated and sorted."""
        return sorted({pool_size(self) if n == "all" else n for n in sizes})


class TrainingParams(BaseModel):
    """The classifier recipe shared by every arm (one architecture; a budget that follows N, the same for every arm
    at a given N: `steps_for`)."""

    model: ModelName
    epochs: float = Field(gt=0)           # passes over the N training images ...
    min_steps: int = Field(gt=0)          # ... clipped to [min_steps, max_steps] optimizer steps
    max_steps: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    lr: float = Field(gt=0)
    augment: Annotated[str, _one_of(train_module.AUGMENTATIONS)]
    tta: Annotated[str, _one_of(train_module.TTA)] = "flip"

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


class RealCurve(BaseModel):
    """The real arm's curve and its budget check (baseline, scaling): the check reruns some of the curve's N at
    twice the budget and scores them on validation, so its N must be cells the grid runs."""

    train_sizes: Sizes = Field(min_length=1)
    budget_check_sizes: Sizes = Field(default_factory=list)

    def real_sizes(self) -> list[int]:
        return self.resolve(self.train_sizes)

    def budget_sizes(self) -> list[int]:
        return self.resolve(self.budget_check_sizes)

    @model_validator(mode="after")
    def _budget_check_in_grid(self):
        self._check_sizes_fit()     # first (pydantic runs this mixin's check before StudyParams'): the clearer message
        missing = set(self.budget_sizes()) - set(self.real_sizes())
        if missing:
            raise ValueError(f"budget_check_sizes {sorted(missing)} are not in train_sizes: the check doubles the "
                             f"budget of cells the grid runs; allowed: a subset of {self.real_sizes()}")
        return self


class GeneratorBudgets(BaseModel):
    """The generator training budgets every notebook shares: equal values -> the same cached generator."""

    gen_steps: StepsPerFamily
    gen_seed: int = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _pretrained_need_no_steps(cls, values):
        return generators.fill_pretrained_steps(values)   # pretrained generators are not trained: nominal budget 1

    def generator_steps(self, name: str) -> int:
        """The training steps of generator `name` in this notebook (GeneratorsParams' `zoo_overrides` may differ)."""
        return self.gen_steps[name]

    def generator_config(self, name: str) -> dict:
        """The settings this notebook gives generator `name` beyond its family's defaults ({}: the defaults)."""
        return {}

    def generator_key(self, name: str) -> dict:
        """What a cell key holds about generator `name` (`generators.cell_key`), and `gen_config` where this
        notebook sets more than the defaults: keys of default generators stay as they were recorded."""
        key = generators.cell_key(name, self.generator_steps(name), self.gen_seed)
        config = self.generator_config(name)
        return {**key, "gen_config": config} if config else key

    def _require_steps(self, *fields: str, budget: str = "gen_steps") -> None:
        """Refuse generators named in `fields` that have no training budget in `budget`."""
        missing = sorted({n for f in fields for n in _as_list(getattr(self, f)) if n not in getattr(self, budget)})
        if missing:
            raise ValueError(f"{budget} has no entry for {missing}; give every generator in {' and '.join(fields)} "
                             f"its training steps")


# ---------------------------------------------------------------- one schema per notebook
class BaselineParams(StudyParams, TrainingParams, RealCurve):
    """notebooks/baseline: test accuracy vs the number N of real training images."""

    def resolved_sizes(self) -> list[int]:
        return self.real_sizes()


class GeneratorsParams(StudyParams, TrainingParams, GeneratorBudgets):
    """notebooks/generators: train the zoo on the full train pool; FID/KID/PRDC and CAS per generator."""

    generator_names: GeneratorNames = Field(min_length=1)
    cas_generators: GeneratorNames | None = None   # the families CAS trains a classifier for (None: all of them)
    # what a CAS classifier trains on: "pool", a fixed synthetic set as large as the real pool, drawn once per seed
    # (Ravuri & Vinyals' CAS: generated data standing in for the real dataset), or "stream", fresh samples every
    # step. Measured (2-core Xeon, quick flow): a stream at N=all is 320,000 samples, ~2.4 min per cell; the pool
    # 55,000, ~25 s
    cas_arm: Literal["pool", "stream"] = "pool"
    quality_samples: int = Field(ge=20)   # PRDC's 5 nearest neighbours and KID's subsets need a real sample
    extractor_steps: int = Field(gt=0)
    # per family, this notebook's whole-pool generator trained and sampled otherwise than `gen_steps` and the
    # defaults, which scaling and audits share: {"flow": {"steps": 64000, "guidance": 1.0}} ("steps" replaces
    # gen_steps; every other key is a family setting, checked by `generators.create`)
    zoo_overrides: dict[GeneratorName, dict] = Field(default_factory=dict)

    def cas_names(self) -> list[str]:
        return list(self.generator_names if self.cas_generators is None else self.cas_generators)

    def generator_steps(self, name: str) -> int:
        return self.zoo_overrides.get(name, {}).get("steps", self.gen_steps[name])

    def generator_config(self, name: str) -> dict:
        """The override's settings other than steps, as the family stores them (1 -> 1.0 where it holds a float),
        less those equal to the defaults: a restated default changes no key."""
        defaults = generators.config_options(name)
        out = {}
        for k, v in sorted(self.zoo_overrides.get(name, {}).items()):
            if k == "steps":
                continue
            if isinstance(defaults.get(k), float) and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if k not in defaults or v != defaults[k]:
                out[k] = v
        return out

    @model_validator(mode="after")
    def _zoo_overrides(self):
        for name, settings in self.zoo_overrides.items():
            if name not in self.generator_names:
                raise ValueError(f"zoo_overrides names {name!r}, which is not in generator_names; allowed: "
                                 f"{self.generator_names}")
            if generators.is_pretrained(name):
                raise ValueError(f"zoo_overrides[{name!r}]: a pretrained generator is not trained here; allowed: "
                                 f"the trained families of generator_names")
            steps = settings.get("steps", 1)
            if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
                raise ValueError(f"zoo_overrides[{name!r}]['steps']={steps!r}: allowed: a positive integer")
            try:                                # unknown keys and bad values, named by the family, before compute
                # the dataset's own shape; an image folder's class count is not known before loading, and no
                # family's settings depend on it, so 10 stands in
                shape = data.nominal_image_shape(self.dataset, self.image_size)
                generators.create(name, shape, len(data.CLASSES.get(self.dataset, range(10))),
                                  **self.generator_config(name))
            except ValueError as err:
                raise ValueError(f"zoo_overrides[{name!r}]: {err}") from None
        return self

    @model_validator(mode="after")
    def _budgets(self):
        outside = [n for n in (self.cas_generators or []) if n not in self.generator_names]
        if outside:
            raise ValueError(f"cas_generators {outside} are not in generator_names; allowed: a subset of "
                             f"{self.generator_names}")
        self._require_steps("generator_names")
        return self


class ScalingParams(StudyParams, TrainingParams, GeneratorBudgets, RealCurve):
    """notebooks/scaling: real vs synthetic (fixed pool, online stream, mixed) training data across N."""

    scaling_sizes: Sizes = Field(min_length=1)
    scaling_generators: GeneratorNames = Field(min_length=1)
    pool_multiples: Multiples             # pool sizes M = multiple x N; may be empty: no fixed-pool arm
    # synthetic share of each batch (0 is the real arm and 1 the stream arm, both run anyway); may be empty
    mix_fractions: Annotated[list[float], _rule(lambda f: 0 < f < 1, "numbers strictly between 0 and 1")]
    stream: bool = True

    @model_validator(mode="after")
    def _some_synthetic_arm(self):
        self._require_steps("scaling_generators")
        if not (self.pool_multiples or self.stream or self.mix_fractions):
            raise ValueError("no synthetic arm left: give pool_multiples or mix_fractions, or set stream to true")
        return self

    def resolved_sizes(self) -> list[int]:
        """The N of the synthetic arms (each also gets the real arm, for a paired comparison)."""
        return self.resolve(self.scaling_sizes)

    def real_sizes(self) -> list[int]:
        """The N of the real arm: the real curve (train_sizes) plus every synthetic N."""
        return self.resolve([*self.train_sizes, *self.scaling_sizes])

    def pool_sizes(self, n: int) -> list[int]:
        """Fixed-pool sizes M for N real images: multiple x N, clipped to the images a classifier sees
        (steps_for(n) x batch_size; a larger pool is never fully seen), duplicates dropped. With the stream arm on, a
        pool of exactly that size is dropped too: each of its images is seen once, which is what the stream is
        (the same measurement twice would only cost time)."""
        cap = self.steps_for(n) * self.batch_size
        sizes = {min(m * n, cap) for m in self.pool_multiples}
        return sorted(sizes - {cap} if self.stream else sizes)


class AuditsParams(StudyParams, TrainingParams, GeneratorBudgets):
    """notebooks/audits: does a generator copy its training images (across N), does it amplify class imbalance?"""

    gen_steps: TrainedStepsPerFamily      # the audits train their generators: no pretrained family
    extractor_steps: int = Field(gt=0)
    contrastive_steps: int = Field(gt=0)  # the second feature space (SimCLR encoder of the pool)
    audit_generators: TrainedGeneratorNames = Field(min_length=1)
    audit_gen_steps: TrainedStepsPerFamily   # generator steps in the N sweep (small N: plateau sooner than the pool)
    audit_sizes: list[int] = Field(min_length=1)
    audit_zoo: TrainedGeneratorNames
    audit_samples: int = Field(gt=0)
    copy_quantile: float = Field(gt=0, le=0.5)
    copy_margin: Margin                    # copy excess still called "no excess" (TOST)
    auc_margin: float = Field(gt=0, lt=0.5)  # attack AUC - 0.5 still called "no leak" (TOST)
    bias_generators: TrainedGeneratorNames = Field(min_length=1)   # per-class scores on the validation holdout
    bias_n: int = Field(gt=0)
    rare_classes: list[int]
    rare_fraction: float = Field(gt=0, le=1)

    @model_validator(mode="after")
    def _audits_fit(self):
        from .audits import bias
        self._require_steps("audit_zoo", "bias_generators")
        self._require_steps("audit_generators", budget="audit_gen_steps")
        pool = pool_size(self)
        # the privacy audit compares the N training images with N held-out pool images the generator never saw
        bad = [n for n in self.audit_sizes if not 2 <= n <= pool // 2]
        if bad or len(set(self.audit_sizes)) != len(self.audit_sizes):
            raise ValueError(f"audit_sizes {bad or self.audit_sizes} invalid: distinct sizes, each needs as many "
                             f"held-out images from the pool of {pool} (dataset={self.dataset!r}, val_size="
                             f"{self.val_size}); allowed: 2..{pool // 2}")
        num_classes = len(data.class_names(self.dataset, self.data_root or None))
        bias.check_imbalance(num_classes, self.rare_classes, self.rare_fraction)
        if self.bias_n * num_classes > pool:
            raise ValueError(f"bias_n={self.bias_n} images per majority class exceeds what the pool of {pool} "
                             f"holds per class; allowed: 1..{pool // num_classes} (roughly; checked exactly "
                             f"when the data is loaded)")
        return self

    def resolved_sizes(self) -> list[int]:
        return sorted(self.audit_sizes)


class MultiviewParams(StudyParams, GeneratorBudgets):
    """notebooks/multiview: contrastive learning (SimCLR / SupCon) from generated views vs real images. Only sigma*
    is chosen on the validation holdout; the test split is never used so."""

    model: ModelName
    generator: GeneratorName               # the family giving the views of every synthetic arm
    # the family whose class-free path (`contrastive.label_free`) gives the label-free control's views
    control_generator: Annotated[str, _one_of(contrastive.LABEL_FREE_FAMILIES, "a family with a class-free path, ")]
    mv_steps: int = Field(gt=0)
    mv_batch_size: int = Field(ge=2)       # pairs per step; a pair needs at least one other pair as negatives
    mv_lr: float = Field(gt=0)
    mv_temperature: float = Field(gt=0)
    # latent standard deviations (0 = identical views); three at least: an interior optimum needs a point between
    # two ends. Beyond 10 an additive neighbour is 10x off the prior and a variance-preserving one an independent
    # draw (correlation 0.1): nothing left to sweep
    sigmas: Annotated[list[float], Field(min_length=3), _rule(lambda s: 0 <= s <= 10, "numbers in [0, 10]")]
    view_noise: Literal[contrastive.NOISE_KINDS]
    latent_truncation: float = Field(ge=0)
    anchor_pools: Annotated[Multiples, Field(min_length=1)]   # unique latents per fixed anchor pool
    mv_probe_size: Annotated[Size, FITS_POOL]     # real pool images the linear probe and k-NN are fitted on
    mv_eval_size: Size                     # validation and test images scored
    mv_knn_k: int = Field(gt=0)
    mv_extra_seeds: Annotated[list[int], _DISTINCT_SEEDS] = []   # added for the method table's verdicts only
    # the arms run at 2x mv_steps on `seeds` (the budget check): real SimCLR, and the generated-view headline at σ*
    mv_budget_arms: Annotated[list[Literal["real", "synthetic"]], Field(min_length=1)] = ["real", "synthetic"]
    # untrained encoders per seed whose probe accuracies are averaged into that seed's floor: the floor's spread
    # over initialisations (±1.6 pts over 5 seeds in quick) is what the paired "vs floor" tests must beat
    mv_floor_inits: int = Field(default=1, ge=1, le=32)

    @model_validator(mode="after")
    def _fits(self):
        self._require_steps("generator", "control_generator")
        if set(self.mv_extra_seeds) & set(self.seeds):
            raise ValueError(f"mv_extra_seeds {self.mv_extra_seeds}: allowed: seeds not in seeds {self.seeds} (a "
                             f"repeated seed is the same run twice)")
        online = self.mv_steps * self.mv_batch_size
        too_big = [m for m in self.anchor_pools if m >= online]
        if too_big:
            raise ValueError(f"anchor_pools {too_big} are not below the {online} anchors an online arm sees "
                             f"(mv_steps x mv_batch_size): such a pool is never seen twice, it is the online arm; "
                             f"allowed: 1..{online - 1}")
        return self


class ReportParams(BaseModel):
    """The report notebook reads run records only: which profile's records, and what it may write."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: Profile
    publish_figures: bool = True
    update_readme: bool = True
