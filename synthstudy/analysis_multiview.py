"""The multiview notebook's analysis: arm names, σ*, the study's paired verdicts, budget checks and findings text.

Everything here works on tidy tables (one row per cell: the cell key's fields, its metrics), so it is tested on
constructed tables (tests/test_analysis_multiview.py) and the notebook only calls it and draws. The statistics are
the study's shared helpers in `synthstudy.metrics` (paired t per seed, Holm, TOST equivalence, budget check); this
module only decides which arms are compared with which, on which split:

- selection (σ*) uses **validation** accuracy only; the interior-optimum verdict then tests the chosen σ* against
  the ends of the range on **test**, which the choice never saw: tested on the validation cells it was picked
  from, σ* would win by its own selection noise (winner's curse) and the verdict would lean to "supported";
- the method, floor, label-free control and anchor-pool verdicts are on **test** accuracy (nothing is chosen there);
- every comparison the notebook prints is one Holm family (`family`), so each verdict is corrected for all others.

    >>> rows = analysis_multiview.floor_comparisons(methods, margin=0.01)           # every trained arm vs the floor
    >>> family = analysis_multiview.family([rows, sweep_rows, pool_rows])           # Holm over the notebook
    >>> analysis_multiview.interior_optimum(family, sigmas, sigma_star)["text"]
"""
from __future__ import annotations

import math

import pandas as pd

from . import contrastive, metrics, runs

FLOOR = "untrained encoder"
VAL, TEST = "probe_accuracy_val", "probe_accuracy_test"
METHOD_NAMES = {"simclr": "SimCLR", "supcon": "SupCon"}
VIEW_NAMES = {"pixel": "pixel", "latent": "latent", "latent_pixel": "latent+pixel"}


# ---------------------------------------------------------------- arms
def arm_label(key: dict, base_steps: int | None = None) -> str:
    """A readable, unique arm name from a cell key's fields (`contrastive.multiview_key`).

    'untrained encoder', 'real · SimCLR · pixel', 'flow · SimCLR · latent σ=0.4', '… · label-free',
    '… · pool M=1000'; ' · 2× steps' (or ' · <n> steps') when the key's steps differ from `base_steps`.
    """
    if key["source"] == "none":
        return FLOOR
    method, views = METHOD_NAMES.get(key["method"], key["method"]), VIEW_NAMES.get(key["views"], key["views"])
    head = "real" if key["source"] == "real" else str(key["generator"])
    label = f"{head} · {method} · {views}"
    sigma = _value(key.get("sigma"))
    if sigma is not None and "latent" in str(key["views"]):
        label += f" σ={sigma:g}"
    if key.get("label_free") is True:
        label += " · label-free"
    anchors = _value(key.get("anchors"))
    if anchors is not None:
        label += f" · pool M={int(anchors)}"
    if base_steps is not None and key.get("steps") is not None and int(key["steps"]) != int(base_steps):
        label += " · 2× steps" if int(key["steps"]) == 2 * int(base_steps) else f" · {int(key['steps'])} steps"
    return label


def _value(v):
    """None for a missing value (None or NaN after a trip through pandas), else the value."""
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def average_floor(table: pd.DataFrame) -> pd.DataFrame:
    """One floor row per seed: the mean over that seed's untrained initialisations (`mv_floor_inits`) of every
    numeric column, so the paired "vs floor" tests compare each trained arm with the floor's expectation rather than
    with one random draw of it. Other arms' rows pass unchanged."""
    floor = table[table["arm"] == FLOOR]
    if floor.empty or not floor["seed"].duplicated().any():
        return table
    numeric = [c for c in floor.columns if pd.api.types.is_numeric_dtype(floor[c])
               and not pd.api.types.is_bool_dtype(floor[c]) and c not in ("seed", "init")]
    first = floor.drop_duplicates("seed").set_index("seed")
    first[numeric] = floor.groupby("seed")[numeric].mean()
    first["floor_inits"] = floor.groupby("seed").size()
    return pd.concat([first.reset_index()[floor.columns.tolist() + ["floor_inits"]], table[table["arm"] != FLOOR]],
                     ignore_index=True)


def with_arms(table: pd.DataFrame, base_steps: int | None = None) -> pd.DataFrame:
    """The tidy table with an `arm` column from each row's key fields."""
    return table.assign(arm=[arm_label(row, base_steps) for row in table.to_dict("records")])


def describe(key: dict, cell_metrics: dict) -> str:
    """The one-line progress summary `runs.Run.grid` prints after each new cell."""
    return (f"{arm_label(key)} seed={key['seed']} steps={key['steps']}: probe val "
            f"{cell_metrics['probe_accuracy_val']:.2%}, test {cell_metrics['probe_accuracy_test']:.2%}")


# ---------------------------------------------------------------- σ sweep
def choose_sigma(sweep: pd.DataFrame, value: str = VAL) -> float:
    """σ* = the σ with the best mean **validation** probe accuracy (ties: the smaller σ). Never reads test."""
    if value != VAL and not value.endswith("_val"):
        raise ValueError(f"sigma* is chosen on validation only; got value={value!r}")
    means = sweep.groupby("sigma")[value].mean().sort_index()
    return float(means.idxmax())


def sweep_summary(sweep: pd.DataFrame) -> pd.DataFrame:
    """One row per σ: validation and test probe accuracy (mean, CI), test k-NN, seeds."""
    rows = []
    for sigma, g in sweep.groupby("sigma", sort=True):
        row = {"sigma": float(sigma), "seeds": len(g)}
        for value, name in ((VAL, "probe val"), (TEST, "probe test"), ("knn_accuracy_test", "kNN test")):
            mean, half = metrics.mean_ci(g[value])
            row.update({f"{name} mean": mean, f"{name} ci": half, f"{name} (%)": metrics.format_ci(mean, half)})
        rows.append(row)
    return pd.DataFrame(rows)


def _tagged(comparisons: pd.DataFrame, question: str, value: str, arm: str = "arm") -> pd.DataFrame:
    """A `metrics.paired_comparisons` result in the family's common layout: question, split, arm (as text)."""
    out = comparisons.rename(columns={arm: "arm"}) if arm != "arm" else comparisons.copy()
    out["arm"] = out["arm"].map(_text)
    out["reference"] = out["reference"].map(_text)
    out.insert(0, "split", "validation" if value.endswith("_val") else "test")
    out.insert(0, "question", question)
    return out


def _text(v) -> str:
    return f"σ={v:g}" if isinstance(v, float) else str(v)


def sweep_comparisons(sweep: pd.DataFrame, sigma_star: float, margin: float, ends_only: bool = True,
                      value: str = TEST) -> pd.DataFrame:
    """The ends of the swept range (or, `ends_only=False`, every σ) against σ* (chosen on validation), paired on
    seeds (question 'σ vs σ*'), on **test** probe accuracy by default: held out from the choice, so σ*'s own
    selection noise cannot make it win. The interior verdict needs only the ends; every extra test in the
    notebook's Holm family costs the other verdicts power."""
    table = sweep.assign(sigma=sweep["sigma"].astype(float))
    ends = [float(table["sigma"].min()), float(table["sigma"].max())] if ends_only else None
    rows = metrics.paired_comparisons(table, value=value, arm="sigma", reference=float(sigma_star), margin=margin,
                                      candidates=ends)
    return _tagged(rows, "σ vs σ*", value, arm="sigma")


def interior_optimum(family: pd.DataFrame, sigmas, sigma_star: float) -> dict:
    """The interior-optimum verdict from the Holm-corrected family's 'σ vs σ*' rows (`sweep_comparisons`: σ*
    chosen on validation, the ends compared with it on the split those rows name, test by default).

    'supported' when σ* lies strictly inside the swept range and both ends are lower than σ* (paired, Holm);
    'not supported' when σ* is an end of the range, or an end is equivalent to σ* (a plateau, not a peak);
    'inconclusive' otherwise. Returns {"verdict", "text", "ends": {σ: verdict of σ vs σ*}}.
    """
    low, high = min(sigmas), max(sigmas)
    rows = family[family["question"] == "σ vs σ*"]
    splits = set(rows["split"])
    if len(splits) > 1:
        raise ValueError(f"the family holds 'σ vs σ*' rows on several splits ({sorted(splits)}); give it one")
    split = splits.pop() if splits else "test"
    on = f"on {split}, σ* chosen on validation"
    ends = {}
    for end in (low, high):
        if end != sigma_star:
            match = rows[rows["arm"] == _text(float(end))]
            ends[float(end)] = match["verdict"].iloc[0] if len(match) else "inconclusive"
    detail = ", ".join(f"σ={e:g} vs σ*: {v}" for e, v in ends.items())
    if sigma_star in (low, high):
        side = "lower" if sigma_star == low else "upper"
        return {"verdict": "not supported", "ends": ends,
                "text": f"not supported: σ* = {sigma_star:g} is the {side} end of the swept range "
                        f"[{low:g}, {high:g}] (chosen on validation); on {split}: {detail}"}
    if all(v == "lower" for v in ends.values()):
        return {"verdict": "supported", "ends": ends,
                "text": f"supported: σ* = {sigma_star:g} beats both ends {on} ({detail}; paired, Holm)"}
    if any(v == "equivalent" for v in ends.values()):
        return {"verdict": "not supported", "ends": ends,
                "text": f"not supported: an end is equivalent to σ* = {sigma_star:g} {on}, a plateau "
                        f"rather than a peak ({detail})"}
    return {"verdict": "inconclusive", "ends": ends,
            "text": f"inconclusive: σ* = {sigma_star:g} is interior but not above both ends {on} "
                    f"({detail}); more seeds would tell"}


# ---------------------------------------------------------------- arms against references
def floor_comparisons(methods: pd.DataFrame, margin: float, value: str = TEST) -> pd.DataFrame:
    """Every trained arm against the untrained encoder (the floor), paired on seeds."""
    rows = metrics.paired_comparisons(methods, value=value, arm="arm", reference=FLOOR, margin=margin)
    return _tagged(rows, "vs floor", value)


def reference_comparisons(methods: pd.DataFrame, reference: str, margin: float, value: str = TEST,
                          candidates=None, question: str | None = None) -> pd.DataFrame:
    """Arms (`candidates`, default all but the floor) against `reference`, paired on seeds."""
    candidates = [a for a in methods["arm"].unique() if a not in (FLOOR, reference)] if candidates is None \
        else candidates
    rows = metrics.paired_comparisons(methods, value=value, arm="arm", reference=reference, margin=margin,
                                      candidates=candidates)
    return _tagged(rows, question or f"vs {reference}", value)


def pool_comparisons(pools: pd.DataFrame, online_arm: str, margin: float, value: str = TEST) -> pd.DataFrame:
    """Each fixed anchor pool against the online arm (fresh latents every step), paired on seeds."""
    rows = metrics.paired_comparisons(pools, value=value, arm="arm", reference=online_arm, margin=margin)
    return _tagged(rows, "pool vs online", value)


def family(parts) -> pd.DataFrame:
    """All of the notebook's comparisons as one Holm family: p_holm, p_equivalence_holm and verdict recomputed."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return metrics.with_verdicts(pd.DataFrame(columns=["difference", "p", "p_equivalence"]))
    return metrics.with_verdicts(pd.concat(parts, ignore_index=True))


def lookup(family_table: pd.DataFrame, question: str, arm: str) -> pd.Series | None:
    """The family's row for (question, arm), or None."""
    rows = family_table[(family_table["question"] == question) & (family_table["arm"] == arm)]
    return rows.iloc[0] if len(rows) else None


# ---------------------------------------------------------------- budget check
def budget_checks(table: pd.DataFrame, base_steps: int, value: str = VAL) -> pd.DataFrame:
    """For every arm with cells at `base_steps` and at twice it: `metrics.budget_check` on validation.

    `table` holds both budgets' cells with a `steps` column and an `arm` column that ignores steps
    (`with_arms(table)` without base_steps). One row per arm: gain, noise, at_plateau, text.
    """
    rows = []
    for arm, g in table.groupby("arm", sort=False):
        g = g.drop_duplicates(["steps", "seed"])          # a cell listed by two experiments counts once
        at = g[g["steps"] == base_steps].set_index("seed")[value]
        twice = g[g["steps"] == 2 * base_steps].set_index("seed")[value]
        common = at.index.intersection(twice.index).sort_values()
        if len(common) < 2:
            continue
        check = metrics.budget_check(at.loc[common].to_numpy(), twice.loc[common].to_numpy())
        rows.append({"arm": arm, "steps": base_steps, "gain (pts)": check.gain * 100, "noise (pts)": check.noise * 100,
                     "at_plateau": check.at_plateau, "pairs": check.pairs, "text": check.text()})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- the method table (README) and findings
def method_table(methods: pd.DataFrame, family_table: pd.DataFrame, order, real_arm: str) -> pd.DataFrame:
    """The README's multiview table: one row per arm in `order`, test probe and k-NN with CIs, validation probe,
    the paired difference to the floor and to real SimCLR (Holm-corrected verdicts from the family), train time."""
    rows = []
    for arm in order:
        g = methods[methods["arm"] == arm]
        if g.empty:
            continue
        row = {"arm": arm}
        for value, name in ((TEST, "linear probe, test (%)"), ("knn_accuracy_test", "k-NN, test (%)"),
                            (VAL, "probe val (%)")):
            row[name] = metrics.format_ci(*metrics.mean_ci(g[value]))
        for question, name in (("vs floor", "vs untrained (test)"), (f"vs {real_arm}", "vs real SimCLR (test)")):
            match = lookup(family_table, question, arm)
            row[name] = metrics.format_difference(match) if match is not None else "—"
        row["train s / cell"] = f"{g['train_seconds'].mean():.0f}"
        row["seeds"] = len(g)
        rows.append(row)
    return pd.DataFrame(rows)


def findings(family_table: pd.DataFrame, *, sigma_star: float, interior: dict, budget: pd.DataFrame,
             headline: str, control: str, real_arm: str, real_test_mean: float,
             supcon_arm: str | None = None, unchecked: tuple[str, ...] = ()) -> list[str]:
    """The notebook's conclusions as markdown bullet lines, every claim a verdict of the Holm family. `unchecked`:
    arms this profile runs without a budget check (`mv_budget_arms`), each named with that gap."""
    floor = family_table[family_table["question"] == "vs floor"]
    above = floor[floor["verdict"] == "higher"]["arm"].tolist()
    not_above = [f"{r['arm']} ({r['verdict']})" for _, r in floor.iterrows() if r["verdict"] != "higher"]
    lines = [f"- **Floor:** {len(above)} of {len(floor)} trained arms beat the untrained encoder on test (paired, "
             f"Holm)" + (f"; not: {', '.join(not_above)}" if not_above else "") + "."]
    lines.append(f"- **Real SimCLR** reaches {real_test_mean:.2%} linear-probe accuracy on test.")
    for _, b in budget.iterrows():
        lines.append(f"- **Budget ({b['arm']}, {b['steps']} steps):** {b['text']}.")
    for arm in unchecked:
        lines.append(f"- **Budget ({arm}):** not checked in this profile (`mv_budget_arms`): whether its numbers "
                     f"are at plateau is unknown; twice the steps may raise them.")
    lines.append(f"- **σ sweep:** σ* = {sigma_star:g} (best mean on validation); interior optimum "
                 f"{interior['text']}.")
    pairs = [(headline, f"vs {real_arm}", "generated views vs real SimCLR"),
             (control, "label-free vs conditional", "label-free control vs the conditional views"),
             (control, "vs floor", "label-free control vs the floor")]
    if supcon_arm:
        pairs.append((headline, f"vs {supcon_arm}", "conditional views vs real SupCon"))
    for arm, question, what in pairs:
        row = lookup(family_table, question, arm)
        if row is not None:
            lines.append(f"- **{what}** ({arm}): {metrics.format_difference(row)}.")
    control_row = lookup(family_table, "label-free vs conditional", control)
    if control_row is not None:
        meaning = {"lower": "the class label the views share carries part of the gain (labels leak through the "
                            "generator)",
                   "equivalent": "the views alone carry the gain: dropping the class changes nothing beyond the "
                                 "margin",
                   "higher": "the class-free views do better: the shared class is not what the encoder learns from",
                   "inconclusive": "this budget cannot tell whether the shared class matters"}[control_row["verdict"]]
        lines.append(f"- **Reading the control:** {meaning}.")
    pools = family_table[family_table["question"] == "pool vs online"]
    if len(pools):
        lines.append("- **Unique anchors:** " + "; ".join(
            f"{r['arm']}: {metrics.format_difference(r)}" for _, r in pools.iterrows()) + ".")
    return lines


# ---------------------------------------------------------------- the notebook's grids, in the order it runs them
def cell_key(P, source: str, method: str = "simclr", views: str = "latent", seed: int = 0, **fields) -> dict:
    """One encoder cell's key (`contrastive.multiview_key`), latent-view SimCLR unless told otherwise."""
    return contrastive.multiview_key(P, source, method, views, seed, **fields)


def method_seeds(P) -> list[int]:
    """The method table's seeds: `seeds` plus `mv_extra_seeds` (more power for its paired verdicts)."""
    return P.seeds + P.mv_extra_seeds


def reference_keys(P) -> list[dict]:
    """The untrained floor (`mv_floor_inits` initialisations per seed), real SimCLR and SupCon on every method seed;
    real SimCLR at 2x steps (budget check, when `mv_budget_arms` names it)."""
    return ([cell_key(P, "none", "none", "none", s, init=i) for s in method_seeds(P) for i in range(P.mv_floor_inits)]
            + [cell_key(P, "real", m, "pixel", s) for m in ("simclr", "supcon") for s in method_seeds(P)]
            + [cell_key(P, "real", "simclr", "pixel", s, steps=2 * P.mv_steps) for s in P.seeds
               if "real" in P.mv_budget_arms])


def sweep_keys(P) -> list[dict]:
    """The σ sweep: latent-view SimCLR at every σ and seed (σ* is chosen from it, on validation)."""
    return [cell_key(P, "synthetic", sigma=s, seed=seed) for s in P.sigmas for seed in P.seeds]


def synthetic_keys(P, sigma_star: float) -> list[dict]:
    """At σ*: the headline at 2x steps (budget check, when `mv_budget_arms` names it) and on every method seed,
    the control generator's conditional and label-free arms; deduplicated (when the control generator is the
    headline's, its conditional arm is the headline itself)."""
    keys = ([cell_key(P, "synthetic", sigma=sigma_star, seed=s, steps=2 * P.mv_steps) for s in P.seeds
             if "synthetic" in P.mv_budget_arms]
            + [cell_key(P, "synthetic", sigma=sigma_star, seed=s) for s in method_seeds(P)]
            + [cell_key(P, "synthetic", sigma=sigma_star, seed=s, generator=P.control_generator, label_free=lf)
               for lf in (False, True) for s in method_seeds(P)])
    return list({runs.stable_hash(k): k for k in keys}.values())


def pool_keys(P, sigma_star: float) -> list[dict]:
    """Fixed anchor pools of M latents at σ* (the online arm is the headline)."""
    return [cell_key(P, "synthetic", sigma=sigma_star, seed=s, anchors=m) for m in P.anchor_pools for s in P.seeds]
