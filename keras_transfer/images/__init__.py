"""From a folder of images to a classifier on a phone.

- folders.py: `read_image_folder`, `read_unlabelled_folder`, `split_folder`, `ImageFolder`.
- networks.py: `compact_cnn`, `build_classifier`, `default_augmentation`, `with_probabilities`.
- classifier.py: `train_image_classifier`, `stage_names`.
- run.py: `train_from_folder`: all of it, writing the model, `.tflite` and report.
- deploy.py: `export_image_classifier` (a `.tflite` with labels and normalisation as
  metadata), `predict_images`.
"""

from keras_transfer.images.classifier import stage_names
from keras_transfer.images.classifier import train_image_classifier
from keras_transfer.images.deploy import export_image_classifier
from keras_transfer.images.deploy import predict_images
from keras_transfer.images.folders import ImageFolder
from keras_transfer.images.folders import read_image_folder
from keras_transfer.images.folders import read_unlabelled_folder
from keras_transfer.images.folders import split_folder
from keras_transfer.images.networks import build_classifier
from keras_transfer.images.networks import compact_cnn
from keras_transfer.images.networks import default_augmentation
from keras_transfer.images.networks import with_probabilities
from keras_transfer.images.run import FolderRun
from keras_transfer.images.run import train_from_folder
