"""synthstudy: can a generative model replace the real dataset when training image models?

The package holds everything the notebooks call; the notebooks hold the story, the parameters and the plots.
Modules, roughly in the order a value flows through them (see README, "Layout"):

- `config`: every notebook's parameter schema; bad values are refused before any compute.
- `data`, `imagefolder`: datasets, the validation holdout, stratified seeded subsets.
- `models`: the classifier / encoder registry (`create_model`).
- `generators/`: the generator registry (trained families and pretrained adapters), fitting, caching, sampling.
- `sources`: the batch sources every arm trains from (real, pool, stream, real + synthetic).
- `train`: the one classifier loop, the budget rule, `classifier_cell` (build → fit → score).
- `cells`: the classifier cells of every grid (key builder + cell function), importable for submitit.
- `contrastive`: SimCLR / SupCon from real or generated views, linear probe, k-NN, the multiview cell.
- `quality`: feature spaces, FID / KID, PRDC, CAS.
- `audits/`: privacy (copy excess, membership attack, planted memoriser) and bias amplification.
- `metrics`: the study's statistics (CIs, paired differences, Holm, equivalence, budget check, N_eff).
- `analysis_scaling`, `analysis_multiview`, `audits.analysis`: each notebook's summaries and findings text.
- `runs`: run folders, atomic records, the artifact cache, executors (inline, submitit local / Slurm).
- `plots`, `report`, `reproduce`, `bench`, `progress`: figures, the README / HTML report, the papermill runner,
  `make bench`, progress bars.

No module imports one that imports it back (report and reproduce share `runs.STUDY_NOTEBOOKS`).
"""

__version__ = "0.1.0"
