"""Progress bars for every long loop: `from synthstudy.progress import tqdm`.

In JupyterLab the bars are widgets (tqdm.auto with ipywidgets). `make reproduce` runs the notebooks with papermill
and streams their output to the terminal, where a widget is invisible: `synthstudy.reproduce` sets
SYNTHSTUDY_TEXT_PROGRESS=1 for its kernels, and the bars are then plain text.
"""
from __future__ import annotations

import os


def tqdm(*args, **kwargs):
    if os.environ.get("SYNTHSTUDY_TEXT_PROGRESS"):
        from tqdm.std import tqdm as text_tqdm
        return text_tqdm(*args, **kwargs)
    from tqdm.auto import tqdm as auto_tqdm
    return auto_tqdm(*args, **kwargs)
