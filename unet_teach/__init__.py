"""unet_teach: the code the unet-teach book builds, one module per idea.

What a student opens next to a chapter (it needs only torch, numpy, scipy, scikit-image,
matplotlib and pooch):

* :mod:`unet_teach.data`     - synthetic membranes and nuclei, the ISBI 2012 EM slices
* :mod:`unet_teach.patches`  - Ciresan-style patch classification by a sliding window
* :mod:`unet_teach.cost`     - multiply-accumulates, receptive fields, the window's redundancy
* :mod:`unet_teach.fcn`      - the patch classifier made fully convolutional
* :mod:`unet_teach.models`   - U-Net from small blocks, and the named presets
* :mod:`unet_teach.losses`   - scores to probabilities, labels and losses; the weight map
* :mod:`unet_teach.augment`  - elastic deformation, flips, rotations, intensity; random
  crops; a data set
* :mod:`unet_teach.train`    - a readable fit loop and safe checkpoints
* :mod:`unet_teach.metrics`  - pixel accuracy, Dice, IoU, Rand error, variation of information
* :mod:`unet_teach.stats`    - comparing two sets of runs: difference of means, 95 % interval
* :mod:`unet_teach.curve`    - chapter 9's experiment: the learning curve, U-Net against N4
* :mod:`unet_teach.infer`    - whole-image and overlap-tile prediction, test-time
  augmentation, probabilities to labels
* :mod:`unet_teach.threshold` - choosing the threshold by pixel error and Rand error together
* :mod:`unet_teach.plot`     - overlays, panels, training curves
* :mod:`unet_teach.diagrams` - the book's diagrams, drawn from the code's own shapes
* :mod:`unet_teach.page`     - a chapter's plumbing: glued values, tables, mean ± sd
* :mod:`unet_teach.profile`  - the training budget and device for this machine (fast on CPU,
  full on CUDA), and what bf16 the CPU computes natively
* :mod:`unet_teach.bench`    - chapter 11's speed ladder; :mod:`unet_teach.timing` its
  timing helpers
* :mod:`unet_teach.files`    - writing a file so that a failure never leaves half of it

Your own images, through the ``unet-teach train / predict / evaluate`` commands:

* :mod:`unet_teach.app`      - image and mask folders, the model file, training on a time
  budget, overlap-tile prediction, evaluation with a quality-control report

The course tooling, apart (it also needs nbformat and nbclient):

* :mod:`unet_teach.course`   - ``release`` (student notebooks), ``grade`` (batch grading),
  ``roster`` (grades into an LMS gradebook), ``checks`` (the exercises' instant feedback)
  and ``cli`` (its ``unet-teach`` subcommands; :mod:`unet_teach.cli` puts the whole
  command together)
* :mod:`unet_teach.checks`   - the exercises' checks under the name notebooks import
"""

__version__ = "0.1.0"
