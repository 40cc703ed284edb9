"""unet_teach: the code the unet-teach book builds, one module per idea.

* :mod:`unet_teach.data`     - synthetic membranes and nuclei, the ISBI 2012 EM slices
* :mod:`unet_teach.models`   - U-Net from small blocks, and the named presets
* :mod:`unet_teach.metrics`  - pixel accuracy, Dice, IoU
* :mod:`unet_teach.train`    - a readable fit loop and safe checkpoints
* :mod:`unet_teach.infer`    - whole-image prediction
* :mod:`unet_teach.plot`     - overlays, panels, training curves
* :mod:`unet_teach.profile`  - the training budget for this machine (fast on CPU, full on CUDA)
"""

__version__ = "0.1.0"
