"""Dask's private task classes that :mod:`featuremap.arrays.dask` builds its graph from are still
there and still run: if this fails after a Dask upgrade, the graph needs a new way."""

from __future__ import annotations

import dask
import numpy as np
from dask.highlevelgraph import HighLevelGraph


def test_task_spec_classes_still_build_a_graph_that_runs():
    from dask._task_spec import DataNode, List, Task, TaskRef

    graph = {
        "data": DataNode("data", np.arange(4)),
        "parts": Task("parts", np.split, TaskRef("data"), 2),
        "sum": Task("sum", lambda a, b: [a.sum(), b.sum()], TaskRef("data"), TaskRef("data")),
        "both": Task("both", list, List(TaskRef("sum"), TaskRef("parts"))),
    }
    result = dask.get(HighLevelGraph.from_collections("x", graph).to_dict(), "both")
    assert [int(v) for v in result[0]] == [6, 6]
    np.testing.assert_array_equal(result[1][1], [2, 3])
