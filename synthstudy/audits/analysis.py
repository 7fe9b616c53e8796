"""The audits notebook's analysis: run records → tidy tables → paired comparisons with verdicts → findings text.

Pure pandas on the records' numbers (no torch), so every rule here is tested on constructed tables
(tests/test_audits.py). The statistics are the study's (`metrics.paired_comparisons`, one Holm family for the
whole notebook via `metrics.with_verdicts`):

- copy excess: per seed, the copy rate against the training images and against the held-out images are two
  "arms" paired on the seed; their difference is the excess (`copy_excess_comparisons`);
- attack: per seed, the AUC against the chance level 0.5 (`attack_comparisons`), only where the planted
  memoriser's AUC in the same setting (its ceiling) reaches `CEILING_MIN`: below it, an AUC near 0.5 says nothing;
- bias: per seed (same subset, same classifier seed), synthetic balanced vs real balanced (the amplification, a
  fair reference), synthetic matched vs real imbalanced (like for like) and real balanced vs real (what rebalancing
  alone does) (`bias_comparisons`).

    >>> from synthstudy.audits import analysis
    >>> long = analysis.privacy_long(privacy_table)
    >>> ceilings = analysis.attack_ceilings(long)
    >>> family = metrics.with_verdicts(pd.concat([analysis.copy_excess_comparisons(long, 0.02),
    ...                                           analysis.attack_comparisons(long, ceilings, 0.05),
    ...                                           analysis.bias_comparisons(groups, 0.01)]))
    >>> analysis.positive_control(family)        # the memoriser must be flagged at every N
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import metrics

MEMORISER = "memoriser"
SPACES = ("pixel", "feature")
CEILING_MIN = 0.9          # an attack AUC is reported only where a planted memoriser reaches this in its setting
BIAS_VALUES = ("gap", "minority", "majority")
# (arm, reference) pairs of the bias audit, the first one the amplification verdict
BIAS_PAIRS = (("synthetic_balanced", "real_balanced"), ("synthetic_matched", "real"), ("real_balanced", "real"))


# ---------------------------------------------------------------- privacy
def privacy_long(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (generator, n_train, seed, space) from the privacy cells' flat rows (`{space}_{measure}`
    columns); spaces a cell did not measure are left out."""
    rows = []
    for space in SPACES:
        column = f"{space}_copy_rate"
        if column not in table:
            continue
        part = table[table[column].notna()]
        rows.append(pd.DataFrame({
            "generator": part["generator"], "n_train": part["n_train"], "seed": part["seed"], "space": space,
            "copy_rate": part[column], "copy_rate_heldout": part[f"{space}_copy_rate_heldout"],
            "copy_excess": part[f"{space}_copy_excess"], "mia_auc": part[f"{space}_mia_auc"]}))
    if not rows:
        raise ValueError("the privacy table has no `pixel_copy_rate` / `feature_copy_rate` columns")
    return pd.concat(rows, ignore_index=True)


def attack_ceilings(long: pd.DataFrame, memoriser: str = MEMORISER) -> pd.DataFrame:
    """The copier ceiling per (n_train, space): the planted memoriser's attack AUC in that setting (same N, sample
    count, member / non-member sets and space), mean and minimum over seeds."""
    planted = long[long["generator"] == memoriser]
    if planted.empty:
        raise ValueError(f"no {memoriser!r} rows: the ceiling is the planted memoriser's AUC, audit it beside "
                         f"the generators")
    return (planted.groupby(["n_train", "space"])["mia_auc"].agg(ceiling="mean", ceiling_min="min")
            .reset_index())


def copy_excess_comparisons(long: pd.DataFrame, margin: float) -> pd.DataFrame:
    """Copy rate against the training images vs against the held-out images, paired on seed, per (generator, N,
    space): `difference` is the copy excess P(d_train < τ) - P(d_heldout < τ)."""
    tidy = pd.concat([long.assign(arm="train", value=long["copy_rate"]),
                      long.assign(arm="heldout", value=long["copy_rate_heldout"])], ignore_index=True)
    out = metrics.paired_comparisons(tidy, value="value", arm="arm", reference="heldout",
                                     within=["generator", "n_train", "space"], pair_on="seed", margin=margin)
    return out.assign(measure="copy excess")


def attack_comparisons(long: pd.DataFrame, ceilings: pd.DataFrame, margin: float,
                       minimum: float = CEILING_MIN) -> pd.DataFrame:
    """Attack AUC vs chance (0.5), paired on seed, per (generator, N, space) whose ceiling (`attack_ceilings`,
    mean over seeds) reaches `minimum`; the ceiling is kept beside each row. Settings below it get no row: an
    AUC there cannot tell a copier from a generator that copies nothing."""
    with_ceiling = long.merge(ceilings, on=["n_train", "space"], how="left")
    powered = with_ceiling[with_ceiling["ceiling"] >= minimum]
    if powered.empty:
        return pd.DataFrame(columns=["generator", "n_train", "space", "arm", "measure", "ceiling"])
    tidy = pd.concat([powered.assign(arm="attack", value=powered["mia_auc"]),
                      powered.assign(arm="chance", value=0.5)], ignore_index=True)
    out = metrics.paired_comparisons(tidy, value="value", arm="arm", reference="chance",
                                     within=["generator", "n_train", "space"], pair_on="seed", margin=margin)
    return out.merge(ceilings, on=["n_train", "space"], how="left").assign(measure="attack AUC")


def unpowered_settings(ceilings: pd.DataFrame, minimum: float = CEILING_MIN) -> pd.DataFrame:
    """The (n_train, space) settings whose ceiling is below `minimum`: their AUC is not reported."""
    return ceilings[ceilings["ceiling"] < minimum].reset_index(drop=True)


def positive_control(family: pd.DataFrame, memoriser: str = MEMORISER) -> pd.DataFrame:
    """The planted memoriser's verdicts: one row per (measure, N, space) with `flagged` (verdict "higher"). An audit
    that does not flag it there cannot detect copying there."""
    rows = family[family["generator"] == memoriser]
    if rows.empty:
        raise ValueError(f"no {memoriser!r} comparisons: the positive control was not audited")
    return rows[["measure", "n_train", "space", "difference", "verdict"]].assign(
        flagged=rows["verdict"] == "higher").reset_index(drop=True)


# ---------------------------------------------------------------- bias
def bias_groups(records: list[dict], arms=None) -> pd.DataFrame:
    """Tidy rows (generator, seed, arm, gap, minority, majority, accuracy) from the bias cells' records."""
    from .bias import ARMS
    arms = arms or ARMS
    return pd.DataFrame([{"generator": r["key"]["generator"], "seed": r["key"]["seed"], "arm": arm,
                          **{v: r["metrics"][f"{arm}_{v}"] for v in (*BIAS_VALUES, "accuracy")}}
                         for r in records for arm in arms])


def bias_comparisons(groups: pd.DataFrame, margin: float, values=BIAS_VALUES) -> pd.DataFrame:
    """Each `BIAS_PAIRS` (arm vs reference) for each value, paired on seed, per generator. `difference` of the gap
    > 0: the arm widens the majority - minority gap relative to its reference."""
    parts = []
    for value in values:
        for arm, reference in BIAS_PAIRS:
            present = groups[groups["arm"].isin([arm, reference])]
            if present.empty:
                continue
            part = metrics.paired_comparisons(present, value=value, arm="arm", reference=reference,
                                              within=["generator"], pair_on="seed", margin=margin, candidates=[arm])
            parts.append(part.assign(measure=value))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


# ---------------------------------------------------------------- words
WORDS = {
    "copy excess": {"higher": "copies: more samples within τ of a training image than of a held-out one",
                    "lower": "fewer samples near training images than near held-out ones: no copying",
                    "equivalent": "no copy excess beyond the margin",
                    "inconclusive": "the seeds cannot tell"},
    "attack AUC": {"higher": "membership leaks", "lower": "below chance (no leak)",
                   "equivalent": "no leak beyond the margin", "inconclusive": "the seeds cannot tell"},
    "gap": {"higher": "amplified", "lower": "reduced", "equivalent": "no change beyond the margin",
            "inconclusive": "the seeds cannot tell"},
    "minority": {"higher": "the minority gains", "lower": "the minority loses", "equivalent": "minority unchanged",
                 "inconclusive": "minority: cannot tell"},
    "majority": {"higher": "the majority gains", "lower": "the majority loses", "equivalent": "majority unchanged",
                 "inconclusive": "majority: cannot tell"},
}


def finding(row) -> str:
    """The verdict of one comparison row in the audit's words."""
    return WORDS[row["measure"]][row["verdict"]]


def setting(n_train: int, pool_size: int) -> str:
    return f"N={int(n_train):,}" + (" (whole pool)" if int(n_train) == int(pool_size) else "")


def privacy_summary(family: pd.DataFrame, ceilings: pd.DataFrame, pool_size: int,
                    minimum: float = CEILING_MIN) -> pd.DataFrame:
    """The README rows of the privacy audit, two per (generator, N): the copy excess, and the attack AUC with its
    ceiling beside it (or why it is not reported), each for every space measured ("pixel: ...; feature: ...")."""
    rows = []
    excess = family[family["measure"] == "copy excess"]
    attack = family[family["measure"] == "attack AUC"].set_index(["generator", "n_train", "space"])
    ceiling = ceilings.set_index(["n_train", "space"])["ceiling"]
    for (generator, n_train), part in excess.groupby(["generator", "n_train"], sort=True):
        values, words, auc_values, auc_words = [], [], [], []
        for r in part.sort_values("space").to_dict("records"):
            space = r["space"]
            values.append(f"{space}: {metrics.format_difference(r, digits=1)}")
            words.append(f"{space}: {finding(r)}")
            c = float(ceiling.get((n_train, space), math.nan))
            if (generator, n_train, space) in attack.index:
                a = attack.loc[(generator, n_train, space)]
                auc_values.append(f"{space}: {0.5 + a['difference']:.3f}, ceiling {c:.2f}; − 0.5 = "
                                  f"{metrics.format_difference(a, digits=1)}")
                auc_words.append(f"{space}: {finding({'measure': 'attack AUC', 'verdict': a['verdict']})}")
            else:
                auc_values.append(f"{space}: not reported (ceiling {c:.2f} < {minimum})")
                auc_words.append(f"{space}: no power (a memoriser would not be caught)")
        where = {"audit": "privacy", "generator": generator, "setting": setting(n_train, pool_size)}
        rows.append({**where, "measure": "copy excess P(d_train<τ) − P(d_heldout<τ)", "value": "; ".join(values),
                     "finding": "; ".join(words)})
        rows.append({**where, "measure": "membership attack AUC (copier ceiling)", "value": "; ".join(auc_values),
                     "finding": "; ".join(auc_words)})
    return pd.DataFrame(rows)


def bias_summary(family: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """The README rows of the bias audit, one per generator and (arm vs reference): both arms' majority - minority
    gap (mean ± CI over seeds), the paired change, and what it is made of (minority and majority changes)."""
    rows = []
    summary = metrics.summarize(groups, by=["generator", "arm"], value="gap").set_index(["generator", "arm"])
    bias_rows = family[family["measure"].isin(BIAS_VALUES)]
    for (generator, arm, reference), part in bias_rows.groupby(["generator", "arm", "reference"], sort=False):
        by_value = part.set_index("measure")
        if "gap" not in by_value.index:
            continue
        gap = by_value.loc["gap"]

        def shown(a):
            s = summary.loc[(generator, a)]          # noqa: B023 -- called within this iteration
            return metrics.format_ci(s["mean"], s["ci"], digits=1)
        how = "; ".join(f"{v} {metrics.format_difference(by_value.loc[v], digits=1)}"
                        for v in ("minority", "majority") if v in by_value.index)
        rows.append({"audit": "bias", "generator": generator, "setting": f"{arm} vs {reference}",
                     "measure": "majority − minority test accuracy gap (pts): arm vs reference → change",
                     "value": f"{shown(arm)} vs {shown(reference)} → {metrics.format_difference(gap, digits=1)}",
                     "finding": f"{finding({'measure': 'gap', 'verdict': gap['verdict']})} ({how})"})
    return pd.DataFrame(rows)


def positive_control_text(control: pd.DataFrame, pool_size: int) -> str:
    missed = control[~control["flagged"]]
    if missed.empty:
        return (f"The planted memoriser is flagged by every audit at every N ({len(control)} comparisons, all "
                f"\"higher\" after Holm): the audits can detect what they claim.")
    where = "; ".join(f"{r.measure}, {setting(r.n_train, pool_size)}, {r.space}: {r.verdict}"
                      for r in missed.itertuples())
    return f"**The planted memoriser is NOT flagged** in {len(missed)} of {len(control)} comparisons ({where}): " \
           f"there, these audits cannot detect copying, and a generator's clean result means nothing."


def privacy_findings(family: pd.DataFrame, ceilings: pd.DataFrame, pool_size: int,
                     memoriser: str = MEMORISER, minimum: float = CEILING_MIN) -> list[str]:
    """Markdown bullet lines: the positive control, then per generator and N what each audit found."""
    lines = [positive_control_text(positive_control(family, memoriser), pool_size)]
    table = privacy_summary(family, ceilings, pool_size, minimum)
    for r in table[table["generator"] != memoriser].to_dict("records"):
        lines.append(f"- `{r['generator']}`, {r['setting']}, {r['measure']}: {r['value']} → **{r['finding']}**.")
    low = unpowered_settings(ceilings, minimum)
    if not low.empty:
        lines.append("- No AUC is reported at " + ", ".join(
            f"{setting(r.n_train, pool_size)} ({r.space}: ceiling {r.ceiling:.2f})" for r in low.itertuples())
            + ": there a generator that returns its training images would not be caught by this attack either "
              "(too few samples per member); the copy excess is the measure that can tell.")
    return lines


def bias_findings(family: pd.DataFrame, groups: pd.DataFrame) -> list[str]:
    return [f"- `{r['generator']}`, {r['setting']}: gap {r['value']} → **{r['finding']}**."
            for r in bias_summary(family, groups).to_dict("records")]


# ---------------------------------------------------------------- two feature spaces
def ranking_agreement(table: pd.DataFrame, value: str = "fid", spaces=("domain", "contrastive"),
                      exclude=(MEMORISER,)) -> tuple[pd.DataFrame, list[str]]:
    """Do the two feature spaces order the generators alike? `table` has one row per (generator, seed) with
    `{space}_{value}` columns. Returns (per generator: mean ± CI half-width and rank in each space, lower = better)
    and the discordant pairs as sentences (empty: the rankings agree)."""
    table = table[~table["generator"].isin(exclude)]
    rows = []
    for generator, group in table.groupby("generator", sort=True):
        row = {"generator": generator}
        for space in spaces:
            mean, half = metrics.mean_ci(group[f"{space}_{value}"])
            row[f"{space}_{value}"], row[f"{space}_{value}_ci"] = mean, half
        rows.append(row)
    ranked = pd.DataFrame(rows)
    if ranked.empty:
        return ranked, []
    for space in spaces:
        ranked[f"{space}_rank"] = ranked[f"{space}_{value}"].rank(method="min").astype(int)
    disagreements = []
    names = ranked["generator"].tolist()
    means = {space: dict(zip(names, ranked[f"{space}_{value}"])) for space in spaces}
    a_space, b_space = spaces
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            da, db = means[a_space][a] - means[a_space][b], means[b_space][a] - means[b_space][b]
            if np.sign(da) * np.sign(db) < 0:
                better_a, better_b = (a, b) if da < 0 else (b, a), (a, b) if db < 0 else (b, a)
                disagreements.append(f"{a} vs {b}: {a_space} ranks {better_a[0]} better ({value} {da:+.3g}), "
                                     f"{b_space} ranks {better_b[0]} better ({value} {db:+.3g})")
    return ranked, disagreements


def ranking_text(ranked: pd.DataFrame, disagreements: list[str], value: str = "fid",
                 spaces=("domain", "contrastive")) -> str:
    if ranked.empty:
        return f"No whole-pool generator to rank by {value}."
    orders = {s: " < ".join(ranked.sort_values(f"{s}_{value}")["generator"]) for s in spaces}
    if not disagreements:
        return f"The {value.upper()} rankings agree in both feature spaces: {orders[spaces[0]]} (best first)."
    return (f"The {value.upper()} rankings disagree: {spaces[0]} {orders[spaces[0]]}, {spaces[1]} "
            f"{orders[spaces[1]]} (best first). Where: " + "; ".join(disagreements) + ".")
