"""The README's headline: the `paper` profile's answer to the study's question, set against the literature.

    python -m synthstudy.report            # rewrites the headline (and the quick results) in README.md

Everything here is read from the committed records of the paper run (results/paper/<notebook>/summary.csv,
findings.md, params.json, environment.json, reproduce.jsonl; issue 18), so a fresh clone regenerates the README's
headline exactly. Each claim is one row of a notebook's summary table or one line of its generated findings (the
verdicts: paired, Holm-corrected, equivalence only from TOST), named in the "source" column; the anchors are the
published results it is set against. A notebook the paper run has not reached yet shows as pending, never as a
number from another profile.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from . import config, runs

PROFILE = "paper"
START, END = "<!-- headline:start -->", "<!-- headline:end -->"

# The published results each claim is set against (the sources named in the README's headline).
ANCHORS = {
    "benchmark": ("Fashion-MNIST benchmark (zalandoresearch/fashion-mnist README): VGG16 93.5%, Capsule Network "
                  "93.6%, WRN-28-10 95.9% (96.3% with random erasing); humans 83.5%"),
    "cas": ("CAS (Ravuri & Vinyals, 2019): classifiers trained only on generated images score below ones trained "
            "on the real data, for every generator they tested"),
    "gafi": ("GaFi (2023): with post-processing, GAN data trains Fashion-MNIST classifiers to within 2.03 points of "
             "real data (a ratio near 0.98)"),
    "sigma": ("GenRep (Jahanian et al., 2022): the transfer accuracy of latent-view contrastive learning is an "
              "inverted U in the latent perturbation σ: an interior optimum"),
    "unique": ("GenRep: more unique generated samples help, with diminishing (roughly logarithmic) returns"),
    "close_below": ("GenRep: representations learned from generated views come close to, but stay below, ones "
                    "learned from the real images"),
    "copying": ("Somepalli et al. (CVPR 2023): generators replicate training images, more so the smaller the "
                "training set"),
}

VERDICT = re.compile(r"\b(higher|lower|equivalent|inconclusive)\b")


def mean_ci(cell: str) -> tuple[float, float]:
    """'82.98 ± 1.56' → (82.98, 1.56): a summary table's mean ± 95% CI half-width ('82.98' alone, one seed: NaN)."""
    mean, _, half = str(cell).partition("±")
    return float(mean), float(half) if half.strip() else float("nan")


def verdict_of(cell: str) -> str | None:
    """The verdict word (higher / lower / equivalent / inconclusive) in a formatted paired difference."""
    match = VERDICT.search(str(cell))
    return match.group(1) if match else None


def run_dir(notebook: str) -> Path:
    return runs.results_root() / PROFILE / notebook


def run_label(notebook: str) -> str | None:
    """The label the notebook's paper run folder was written under (`paper`, or `paper+overrides`), or None."""
    path = run_dir(notebook) / "params.json"
    return json.loads(path.read_text()).get("run_label", PROFILE) if path.is_file() else None


def finished(notebook: str) -> bool:
    """A finished run of the paper profile itself: a run with overrides (e.g. `-p generator flow`) in the same folder
    is another parameter set, never shown as the paper's numbers."""
    return (run_dir(notebook) / "summary.csv").is_file() and run_label(notebook) == PROFILE


def findings_lines(notebook: str, prefix: str) -> list[str]:
    """The notebook's generated findings (findings.md) that start with `prefix`, without the bullet."""
    path = run_dir(notebook) / runs.FINDINGS_FILE
    if not path.is_file():
        return []
    return [line[2:].strip() for line in path.read_text().splitlines() if line.startswith(prefix)]


def _pending(notebook: str) -> dict:
    label = run_label(notebook)
    why = (f"results/paper/{notebook}/ holds a run labelled `{label}`, not the paper profile: rerun it without "
           f"overrides" if label not in (None, PROFILE) else
           f"the paper run has not reached `{notebook}` (`make reproduce PROFILE=paper` resumes it)")
    return {"this study (paper)": f"pending: {why}", "agrees?": "pending", "source": "—"}


def _unreported(notebook: str) -> dict:
    return {"this study (paper)": f"`{notebook}` ran before it wrote findings.md: rerun it (every cell is reused) "
                                  "to report this line", "agrees?": "pending", "source": "—"}


# ---------------------------------------------------------------- one function per claim, each reading one table
def real_ceiling() -> dict:
    """The real arm on the whole pool (baseline summary, last row) against the benchmark table."""
    if not finished("baseline"):
        return _pending("baseline")
    import pandas as pd
    table = pd.read_csv(run_dir("baseline") / "summary.csv")
    row = table.iloc[-1]
    mean, half = mean_ci(row["test accuracy (%)"])
    return {"this study (paper)": f"real data, N = {int(row['n']):,}: {mean:.2f} ± {half:.2f}% test "
                                  f"({int(row['steps']):,} steps, {int(row['seeds'])} seeds)",
            "agrees?": ("on par with VGG16 / Capsule Network (93.5-93.6%), below WRN-28-10"
                        if mean - half <= 93.6 and mean + half >= 93.5 else
                        "below VGG16" if mean + half < 93.5 else
                        "above VGG16 / Capsule Network, below WRN-28-10" if mean + half < 95.9 else
                        "on par with or above WRN-28-10"),
            "source": f"baseline, n = {int(row['n'])}"}


def cas_rows() -> list[dict]:
    """CAS of every family against the real arm (generators summary): below real everywhere? within 2 points?"""
    if not finished("generators"):
        return [_pending("generators"), _pending("generators")]
    import pandas as pd
    table = pd.read_csv(run_dir("generators") / "summary.csv")
    real = table[table["arm"] == "real"].iloc[0]
    synthetic = table[table["arm"] != "real"].sort_values("ratio", ascending=False)
    # families without a CAS arm in this profile (`cas_generators`) have no verdict: not counted either way
    synthetic = synthetic[[verdict_of(v) is not None for v in synthetic["vs real (paired)"]]]
    if synthetic.empty:
        return [_pending("generators"), _pending("generators")]
    # the closest family is chosen on validation CAS (the run's cells), never on the test ratio shown
    validation = _validation_cas()
    if validation:
        synthetic = synthetic.assign(_val=synthetic["arm"].map(validation)).sort_values(
            ["_val", "ratio"], ascending=False, na_position="last").drop(columns="_val")
    verdicts = [verdict_of(v) for v in synthetic["vs real (paired)"]]
    families = ((" (in order of validation CAS)" if validation else "") + ": "
                + "; ".join(f"{r['arm']}{zoo_settings(r['arm'])} {r['test accuracy (%)']}% "
                            f"(ratio {r['ratio']:.3f}, {v})" for (_, r), v in zip(synthetic.iterrows(), verdicts)))
    below = sum(v == "lower" for v in verdicts)
    top = synthetic.iloc[0]
    gap = mean_ci(real["test accuracy (%)"])[0] - mean_ci(top["test accuracy (%)"])[0]
    return [{"this study (paper)": f"real {real['test accuracy (%)']}%; trained on generated images only{families}",
             "agrees?": ("yes: every family below real" if below == len(verdicts) else
                         f"partly: {below} of {len(verdicts)} families below real"),
             "source": "generators, every row"},
            {"this study (paper)": f"closest family: {top['arm']}{zoo_settings(top['arm'])}, ratio "
                                   f"{top['ratio']:.3f}{cas_share_verdict(top['arm'])}, {gap:.1f} points "
                                   f"below real (no post-processing here){longer_training(top['arm'])}",
             "agrees?": ("yes: within GaFi's 2.03 points" if gap <= 2.03 else
                         f"no: {gap:.1f} points below real against GaFi's 2.03"),
             "source": f"generators, row {top['arm']}"}]


def _validation_cas() -> dict:
    """{family: mean validation CAS} from the generators run's cells; {} where none are recorded."""
    import pandas as pd

    from . import analysis_generators
    try:
        seeds, _ = analysis_generators.cas_reference(pd.read_csv(run_dir("generators") / "metrics.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError, KeyError):
        return {}
    return {family: sum(values) / len(values) for family, values in seeds.items() if values}


def cas_share_verdict(family: str) -> str:
    """'; at least 0.95× real (Welch on test, unpaired: +0.37 [+0.02, +0.72] pts over it)': the family's CAS seeds
    against the real arm's on test (`analysis_generators.family_shares`, issue 17's target), from the generators
    run's cells; empty without them."""
    import pandas as pd

    from . import analysis_generators
    try:
        shares = analysis_generators.family_shares(pd.read_csv(run_dir("generators") / "metrics.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):     # no cells recorded (yet)
        return ""
    if family not in shares:
        return ""
    share = shares[family][0]
    interval = (f": {analysis_generators.format_share_interval(share)} over it" if not math.isnan(share["ci_low"])
                else "")
    return f"; {share['verdict']} {analysis_generators.CAS_TARGET:g}× real (Welch on test, unpaired{interval})"


def zoo_settings(family: str) -> str:
    """' (64,000 steps, guidance 1: zoo_overrides)' where the generators run trained or sampled the family
    otherwise than the shared gen_steps and defaults (its params.json `zoo_overrides`); else empty."""
    params = run_dir("generators") / "params.json"
    overrides = json.loads(params.read_text()).get("zoo_overrides", {}).get(family) if params.is_file() else None
    if not overrides:
        return ""
    parts = [f"{overrides['steps']:,} steps"] if "steps" in overrides else []
    parts += [f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in overrides.items() if k != "steps"]
    return f" ({', '.join(parts)}: zoo_overrides)"


def longer_training(family: str) -> str:
    """What the budget curves (results/paper/generator_curves, `analysis_generators`) say of the family beyond the
    paper run's stop (its params.json `gen_steps`): its validation CAS at the largest budget scored, against the
    real arm's validation accuracy; empty where no CAS was scored beyond the stop, or where the run trained the
    family otherwise (`zoo_overrides`: the row is then that fit)."""
    import pandas as pd

    from . import analysis_generators
    curves = runs.results_root() / PROFILE / "generator_curves" / "curves.csv"
    cells, params = run_dir("generators") / "metrics.csv", run_dir("generators") / "params.json"
    if not (params.is_file() and cells.is_file() and cells.stat().st_size):
        return ""
    settings = json.loads(params.read_text())
    if family in settings.get("zoo_overrides", {}):       # the row itself is the longer fit: nothing to add
        return ""
    if not curves.is_file():
        return ""
    stop = settings.get("gen_steps", {}).get(family)
    _, real_val = analysis_generators.cas_reference(pd.read_csv(cells))
    rows = analysis_generators.first_seed(pd.read_csv(curves))
    rows = rows[(rows["generator"] == family) & (rows["gen_steps"] > (stop or math.inf))].sort_values("gen_steps")
    rows = rows[analysis_generators.cas_means(rows).notna()]
    if rows.empty or not real_val:
        return ""
    last = rows.iloc[-1]
    steps, seeds = int(last["gen_steps"]), len(analysis_generators.cas_values(last["cas_val"]))
    cas = analysis_generators.cas_means(rows).iloc[-1]
    return (f"; trained {steps / stop:g}× longer ({steps:,} steps, {seeds} classifier seed{'s' if seeds > 1 else ''}, "
            f"scripts/generator_curves.py) its validation CAS reaches {100 * cas:.1f}%, {cas / real_val:.3f} of "
            f"real's {100 * real_val:.2f}%")


def scaling_row() -> dict:
    """Per N, each synthetic arm's paired difference from the real arm (scaling summary): are generated-only
    streams below real, and does a mix add to it?"""
    if not finished("scaling"):
        return _pending("scaling")
    import pandas as pd
    table = pd.read_csv(run_dir("scaling") / "summary.csv")
    compared = table["vs real (paired)"].map(lambda v: verdict_of(v) is not None)
    synthetic = table[(table["arm"] != "real") & compared]
    parts = []
    for n, rows in synthetic.groupby("N", sort=True):
        parts.append(f"N = {int(n):,}: " + ", ".join(
            f"{r['arm']} {float(str(r['vs real (paired)']).split()[0]):+.1f} pts ({verdict_of(r['vs real (paired)'])})"
            for _, r in rows.iterrows()))
    streams = [verdict_of(v) for a, v in zip(synthetic["arm"], synthetic["vs real (paired)"]) if "stream" in a]
    mixes = [verdict_of(v) for a, v in zip(synthetic["arm"], synthetic["vs real (paired)"]) if "real +" in a]
    agrees = ("yes: every generated-only stream is below real" if streams and all(v == "lower" for v in streams)
              else f"partly: {streams.count('lower')} of {len(streams)} streams below real")
    if mixes:
        agrees += f"; mixes: {', '.join(f'{mixes.count(v)} {v}' for v in dict.fromkeys(mixes))}"
    return {"this study (paper)": "paired difference from the real arm; " + "; ".join(parts),
            "agrees?": agrees, "source": "scaling, every row"}


def _views_row(prefix: str, judge) -> dict:
    if not finished("multiview"):
        return _pending("multiview")
    lines = findings_lines("multiview", prefix)
    if not lines:
        return _unreported("multiview")
    return {"this study (paper)": lines[0].replace("**", ""), "agrees?": judge(lines[0]),
            "source": "multiview, findings"}


def sigma_row() -> dict:
    def judge(line):
        verdict = re.search(r"interior optimum (supported|not supported|inconclusive)", line)
        return {"supported": "yes", "not supported": "no", "inconclusive": "cannot tell"}.get(
            verdict.group(1) if verdict else "", "cannot tell")
    return _views_row("- **σ sweep:**", judge)


def unique_row() -> dict:
    def judge(line):
        pools = re.findall(r"pool M=([\d,]+)[^;]*?\b(higher|lower|equivalent|inconclusive)\b", line)
        each = ", ".join(f"M={m}: {v}" for m, v in pools)
        verdicts = [v for _, v in pools]
        if "lower" in verdicts:
            return f"yes: a fixed pool is below the online stream ({each})"
        if verdicts and all(v in ("equivalent", "higher") for v in verdicts):
            return f"no: no pool below online ({each})"
        return f"cannot tell ({each})" if each else "cannot tell"
    return _views_row("- **Unique anchors:**", judge)


def close_below_row() -> dict:
    def judge(line):
        return {"lower": "yes: below real", "equivalent": "close: equivalent to real",
                "higher": "no: above real SimCLR (see the label-free control)",
                "inconclusive": "cannot tell"}.get(verdict_of(line), "cannot tell")
    return _views_row("- **generated views vs real SimCLR**", judge)


def copying_row() -> dict:
    """Copy excess of the audited generators per N (audits summary), read only where the planted memoriser (the
    positive control) is caught: a clean result from an audit that misses a memoriser means nothing."""
    if not finished("audits"):
        return _pending("audits")
    import pandas as pd
    table = pd.read_csv(run_dir("audits") / "summary.csv")
    copy = table[(table["audit"] == "privacy") & table["measure"].str.startswith("copy excess")]
    control = copy[copy["generator"] == "memoriser"]
    caught = control["finding"].str.contains("copies:")
    audited = copy[copy["generator"] != "memoriser"]
    found = [f"{r['generator']} at {r['setting']}" for _, r in audited.iterrows() if "copies:" in r["finding"]]
    text = ("planted memoriser caught at " + (", ".join(control.loc[caught, "setting"]) or "no N") + "; " +
            "; ".join(f"{r['generator']}, {r['setting']}: {r['finding']}" for _, r in audited.iterrows()))
    if control.empty or not caught.all():
        agrees = "cannot tell: the planted memoriser is not caught everywhere"
    elif found:
        agrees = f"yes: copies at {', '.join(found)}"
    else:
        agrees = "no copy excess found at these N (the memoriser is caught)"
    return {"this study (paper)": text, "agrees?": agrees, "source": "audits, copy-excess rows"}


def claims() -> list[dict]:
    """The headline table: one row per question, with its anchor, the paper run's answer and where it is read."""
    questions = [("How high does real data go?", "benchmark", real_ceiling()),
                 *zip(("Is training on generated images alone below real? (CAS)",
                       "Can generated data come within ~2 points of real?"), ("cas", "gafi"), cas_rows()),
                 ("Across N: can generated data stand in for, or add to, N real images?", "cas", scaling_row()),
                 ("Is there an interior optimum σ for latent views?", "sigma", sigma_row()),
                 ("Do more unique generated samples help?", "unique", unique_row()),
                 ("Are generated views close to but below real views?", "close_below", close_below_row()),
                 ("Does a generator copy its training images?", "copying", copying_row())]
    return [{"question": q, "anchor": ANCHORS[a], **row} for q, a, row in questions]


def profiles_differ() -> str:
    """One sentence on how the quick profile (the README's results below) differs from paper, from configs/."""
    quick, paper = config.load_profile("quick"), config.load_profile(PROFILE)

    def shape(p):
        return (f"{len(p['seeds'])} seeds, classifiers ≤ {p['max_steps']:,} steps, N ∈ "
                f"{{{', '.join(str(n) for n in p['train_sizes'])}}}, CAS for {', '.join(p['cas_generators'])}, "
                f"scaling at N ∈ {{{', '.join(str(n) for n in p['scaling_sizes'])}}}, {p['mv_steps']}-step encoders "
                f"on {len(p['sigmas'])} σ values")
    return (f"The `quick` profile below ({shape(quick)}) is sized to finish in an hour on 2 cores; `paper` "
            f"({shape(paper)}) is the study's answer: where the two differ, the paper numbers hold, since quick's "
            f"budget checks are looser and its CIs wider.")


def run_status() -> str:
    done = [nb for nb in runs.STUDY_NOTEBOOKS if finished(nb)]
    left = [nb for nb in runs.STUDY_NOTEBOOKS if nb not in done]
    text = f"Notebooks finished on `paper`: {', '.join(f'`{nb}`' for nb in done) or 'none'}"
    if left:
        text += f"; still to run: {', '.join(f'`{nb}`' for nb in left)} (`make reproduce PROFILE=paper` resumes)"
    return text + "."


def started() -> bool:
    """Whether any notebook of the paper run has finished (else the README has no headline to show)."""
    return any(finished(nb) for nb in runs.STUDY_NOTEBOOKS)


def section() -> str | None:
    """The README's headline block (markdown), or None where the paper run has not started."""
    if not started():
        return None
    from .report import section as notebook_markdown
    from .report import timing_section
    rows = claims()
    lines = ["### Headline: the `paper` profile", "",
             run_status() + " " + profiles_differ(), "",
             "**Findings**, each read from the row its \"source\" names (a notebook's summary table or generated "
             "findings; verdicts paired and Holm-corrected, but for the unpaired Welch share of real, named where "
             "it is used), set against a published anchor:", ""]
    lines += [f"- **{r['question']}** {r['this study (paper)']} — {r['agrees?']} (anchor: {r['anchor']}; source: "
              f"{r['source']})." for r in rows if r["agrees?"] != "pending"]
    pending = [r["question"] for r in rows if r["agrees?"] == "pending"]
    if pending:
        lines.append(f"- Pending until the paper run reaches them: {'; '.join(pending)}")
    lines.append("")
    timing = timing_section(PROFILE)
    parts = [timing] if timing else []
    parts += [notebook_markdown(PROFILE, nb, run_figures=True) for nb in runs.STUDY_NOTEBOOKS if finished(nb)]
    lines += ["<details><summary>The paper run's tables, figures and wall time</summary>", "",
              "\n\n".join(p for p in parts if p), "", "</details>"]
    return "\n".join(lines)
