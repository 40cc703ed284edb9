"""Your own images: train, predict and evaluate from the command line.

The ``unet-teach`` command's ``train``, ``predict`` and ``evaluate`` run the book's U-Net on
folders of the reader's own image and mask files, with everything the chapters leave out
checked for you::

    unet-teach train IMAGES MASKS --out model.pt --minutes 10
    unet-teach predict model.pt NEW_IMAGES --out predictions
    unet-teach evaluate predictions TRUE_MASKS --report qc

One module a step, each usable from Python too:

* :mod:`unet_teach.app.cli`       - the three subcommands, registered with ``unet-teach``
* :mod:`unet_teach.app.settings`  - ``train``'s options, declared once (stored or not)
* :mod:`unet_teach.app.images`    - find, pair, read, check and atomically write files
* :mod:`unet_teach.app.inputs`    - ``train``'s options, resume state and data, checked
* :mod:`unet_teach.app.budget`    - the time budget, the learning-rate schedule, the precision
* :mod:`unet_teach.app.loop`      - the training loop
* :mod:`unet_teach.app.parallel`  - data-parallel training under ``torchrun``
* :mod:`unet_teach.app.validate`  - the validation part, its scores and the threshold
* :mod:`unet_teach.app.train`     - ``train``: the steps above, in order
* :mod:`unet_teach.app.modelfile` - the model file: weights, classes, normalisation, threshold
* :mod:`unet_teach.app.predict`   - overlap-tile prediction, test-time augmentation, outputs
* :mod:`unet_teach.app.evaluate`  - pixel error, Dice, IoU, Rand error and VI per image
* :mod:`unet_teach.app.report`    - the quality-control page

Bad input raises :class:`unet_teach.app.images.InputError` (the command prints its one-line
message and exits with status 2) before any file is written.
"""
