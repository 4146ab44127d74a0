"""Domain adaptation: DANN, CDAN, MMD, CORAL, CMD, MCC; AdaBN, TENT, SHOT; re-weighting, recipes.

Each method is one file on the `Adapter` base (adapter.py) and one import line here.
"""

from keras_transfer.adapt import batchnorm
from keras_transfer.adapt.adabn import adabn
from keras_transfer.adapt.adapter import Adapter
from keras_transfer.adapt.callbacks import CollapseGuard
from keras_transfer.adapt.callbacks import DANNSchedule
from keras_transfer.adapt.cdan import CDAN
from keras_transfer.adapt.dann import DANN
from keras_transfer.adapt.discrepancy import DiscrepancyAdapter
from keras_transfer.adapt.discrepancy import balanced_weight
from keras_transfer.adapt.layers import GradientReversal
from keras_transfer.adapt.losses import Discrepancy
from keras_transfer.adapt.losses import cmd
from keras_transfer.adapt.losses import coral
from keras_transfer.adapt.losses import mmd
from keras_transfer.adapt.mcc import MCC
from keras_transfer.adapt.metrics import proxy_a_distance
from keras_transfer.adapt.recipe import InverseDecay
from keras_transfer.adapt.recipe import adaptation_optimizer
from keras_transfer.adapt.recipe import digit_networks
from keras_transfer.adapt.reweight import importance_weighted_risk
from keras_transfer.adapt.reweight import importance_weights
from keras_transfer.adapt.shot import shot
from keras_transfer.adapt.tent import prediction_entropy
from keras_transfer.adapt.tent import tent
