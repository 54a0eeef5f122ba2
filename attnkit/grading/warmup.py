"""What the grading zygote imports and runs once before it forks workers: what course notebooks use.

The pipeline hands `"attnkit.grading.warmup:warm_up"` to the sandbox, which calls it in the zygote;
every forked worker then starts with torch, matplotlib, ipywidgets and attnkit loaded, and the first
calls of the ops the checks use already paid for.
"""

from __future__ import annotations

import sys

__all__ = ["warm_up"]


def warm_up() -> list[str]:
    """Import what notebooks use, so that each forked worker starts with it loaded."""
    problems = []
    import torch

    torch.set_num_threads(1)  # no OpenMP thread pool before fork: a forked child would hang on it
    import numpy  # noqa: F401

    for name in ("matplotlib.pyplot", "ipywidgets", "IPython.display"):
        try:
            __import__(name)
        except Exception as err:  # optional for grading; a notebook that needs it will say so
            problems.append(f"{name}: {err}")
    import attnkit
    from attnkit.checks import all_exercises
    from attnkit.grading import worker  # noqa: F401

    for name in attnkit.__all__:  # every module of the package's public face
        try:
            getattr(attnkit, name)
        except Exception as err:
            problems.append(f"attnkit.{name}: {type(err).__name__}: {err}")
    for ex in all_exercises().values():  # first calls of the ops the checks use are slow: do them once here
        try:
            for case in ex.cases():
                ex.invoke(ex.reference, case.inputs)
        except Exception as err:
            problems.append(f"exercise {ex.id}'s reference: {type(err).__name__}: {err}")
    if "matplotlib.pyplot" in sys.modules:  # fonts, colour maps and layout code load on first use
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        fig.colorbar(ax.imshow(torch.rand(3, 4).numpy()), ax=ax)
        ax.set_title("warm-up $x^2$")
        ax.plot([0, 1], [1, 0], label="a")
        ax.legend()
        fig.canvas.draw()
        plt.close(fig)
    return problems
