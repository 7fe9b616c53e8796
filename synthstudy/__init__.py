"""synthstudy: can a generative model replace the real dataset when training image models?

The package holds everything the notebooks call: data (`synthstudy.data`), classifiers (`synthstudy.models`),
the single training loop (`synthstudy.train`), metrics with confidence intervals (`synthstudy.metrics`),
parameter validation (`synthstudy.config`) and run records / caches (`synthstudy.runs`).
"""

__version__ = "0.1.0"
