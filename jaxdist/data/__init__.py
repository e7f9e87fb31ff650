"""Data: built-in datasets (offline and tfds), partitions over workers, and batch sources."""

from jaxdist.data.partition import Sampler
from jaxdist.data.sources import (
                                  ArrayData,
                                  Data,
                                  FunctionData,
                                  IteratorData,
                                  as_data,
                                  from_arrays,
                                  from_function,
                                  from_iterator,
                                  sampled,
)

__all__ = [
                                  "ArrayData",
                                  "Data",
                                  "FunctionData",
                                  "IteratorData",
                                  "Sampler",
                                  "as_data",
                                  "datasets",
                                  "from_arrays",
                                  "from_function",
                                  "from_iterator",
                                  "partition",
                                  "sampled",
                                  "sources",
]
