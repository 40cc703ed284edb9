"""unet_teach: the code the unet-teach book builds, one module per idea.

What a student opens next to a chapter (it needs only torch, numpy, scipy, scikit-image,
matplotlib and pooch):

* :mod:`unet_teach.data`     - synthetic membranes and nuclei, the ISBI 2012 EM slices
* :mod:`unet_teach.patches`  - Ciresan-style patch classification by a sliding window
* :mod:`unet_teach.cost`     - multiply-accumulates, receptive fields, the window's redundancy
* :mod:`unet_teach.fcn`      - the patch classifier made fully convolutional
* :mod:`unet_teach.models`   - U-Net from small blocks, and the named presets
* :mod:`unet_teach.losses`   - scores to probabilities, labels and losses; the weight map
* :mod:`unet_teach.augment`  - elastic deformation, flips, rotations, intensity; a data set
* :mod:`unet_teach.train`    - a readable fit loop and safe checkpoints
* :mod:`unet_teach.metrics`  - pixel accuracy, Dice, IoU, Rand error, variation of information
* :mod:`unet_teach.stats`    - comparing two sets of runs: difference of means, 95 % interval
* :mod:`unet_teach.curve`    - chapter 9's experiment: the learning curve, U-Net against N4
* :mod:`unet_teach.infer`    - whole-image and overlap-tile prediction
* :mod:`unet_teach.plot`     - overlays, panels, training curves, Markdown tables
* :mod:`unet_teach.profile`  - the training budget for this machine (fast on CPU, full on CUDA)

Your own images, through the ``unet-teach train / predict / evaluate`` commands:

* :mod:`unet_teach.app`      - image and mask folders, the model file, training on a time
  budget, overlap-tile prediction, evaluation with a quality-control report

The course tooling, apart (it also needs nbformat and nbclient):

* :mod:`unet_teach.course`   - ``release`` (student notebooks), ``grade`` (batch grading),
  ``roster`` (grades into an LMS gradebook), ``checks`` (the exercises' instant feedback)
  and ``cli`` (the ``unet-teach`` command)
* :mod:`unet_teach.checks`   - the exercises' checks under the name notebooks import
"""

__version__ = "0.1.0"
