"""Audits of the study's generators: do they leak their training images (`privacy`), do they amplify a class
imbalance of their training data (`bias`)? `analysis` turns the notebook's records into verdicts and findings
text; `cells` holds the notebook's grid cells (package functions, imported on their own: they load data and models).

    >>> from synthstudy.audits import privacy, bias
    >>> report = privacy.audit(samples, train=members, heldout=nonmembers, embed=extractor.embed)
    >>> report.summary()                 # copy_rate, copy_excess, mia_auc, distance ratio quantiles, thresholds
    >>> privacy.Memoriser(train_set)     # the positive control every audit must flag
    >>> idx = bias.imbalanced_indices(pool.labels, per_class=500, rare_classes=[0, 4, 7], rare_fraction=0.1, seed=0)

The `audits` notebook runs both across sample sizes, seeds and generator families; these modules hold the
measurements so that they can be tested on constructed cases (a "generator" that returns its training images
must be caught, fresh samples of a smooth model must not).
"""
from . import analysis, bias, privacy

__all__ = ["analysis", "bias", "privacy"]
