"""``diled predict``: tasks (method.md §4), streaming writers and metrics, and the Lightning callback.

Data flows one way: batch -> :func:`run_predict_task` -> each :class:`RecordWriter` and
:class:`PredictionMetric` once -> dropped. Nothing is kept across batches but bounded metric states.
"""

from .callback import PredictionWriter
from .metrics import MeanOf, PredictionMetric, RatioOf, Reservoir, core_metrics
from .options import PredictOptions
from .tasks import TASKS, num_rows, run_predict_task, select_rows
from .writers import ArrayWriter, RecordWriter, TableWriter, TextWriter, flatten_outputs, rank_file

__all__ = [
    "TASKS",
    "ArrayWriter",
    "MeanOf",
    "PredictOptions",
    "PredictionMetric",
    "PredictionWriter",
    "RatioOf",
    "RecordWriter",
    "Reservoir",
    "TableWriter",
    "TextWriter",
    "core_metrics",
    "flatten_outputs",
    "num_rows",
    "rank_file",
    "run_predict_task",
    "select_rows",
]
