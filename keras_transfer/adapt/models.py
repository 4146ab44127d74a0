"""The adaptation models, as the first release's module path names them (see adapter.py, dann.py,
...).
"""

from keras_transfer.adapt.adapter import Adapter  # noqa: F401
from keras_transfer.adapt.dann import DANN  # noqa: F401
from keras_transfer.adapt.discrepancy import DiscrepancyAdapter  # noqa: F401
