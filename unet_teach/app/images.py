"""Your own image and mask files: find them, pair them, read them, check them, write results.

The commands read everything they need and check it *before* they write anything, and a
problem with the input is an :class:`InputError` whose message is one line: the file, what
is wrong with it, and what to do. What is checked, in the order a command meets it:

1. the folders - they exist and hold PNG or TIFF files and nothing else (hidden files
   such as ``.DS_Store`` are skipped); images and masks pair by file name without the
   extension (``a.png`` with ``a.tif``), and every image has a mask and every mask an image;
2. each file - it opens as a 2-D image (PNG, TIFF, JPEG for images only), 8- or 16-bit
   integer or float, grey, grey + alpha, RGB or RGBA;
3. each mask - one integer label per pixel and only a few different values (at most
   ``MAX_CLASSES``): JPEG compression and resizing with interpolation make in-between values,
   which would each become a class of their own;
4. each pair - the mask has its image's height and width.

Outputs are written atomically: to a temporary file in the same folder, then renamed over
the target (``os.replace``), so an interrupted run never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

# The package's one atomic writer; report.py, modelfile.py and evaluate.py use it from here.
from ..files import write_atomic

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
MASK_SUFFIXES = (".png", ".tif", ".tiff")
# Files operating systems drop into folders; never the user's data.
IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
#: At most this many different values in a mask (a class mask holds a few; a JPEG many).
MAX_CLASSES = 16
#: The probability maps ``predict`` writes next to its masks: ``<stem>_prob.tif``.
PROB_SUFFIX = "_prob"
#: Intensity normalisation: each image's 1st and 99.8th percentiles map to 0 and 1
#: (clipped), whatever its bit depth - 8-bit, 16-bit, 12 bits stored in 16, or float.
NORMALIZATION = {"method": "percentile", "low": 1.0, "high": 99.8}
#: What the commands say when they change an image's colours to fit the model.
COLOR_NOTES = {"rgb->grey": "RGB images were converted to grey (the model takes 1 channel)",
               "grey->rgb": "grey images were repeated into 3 channels (the model takes RGB)"}
# skimage.color.rgb2gray's weights (ITU-R BT.709 luma).
_RGB_WEIGHTS = np.array([0.2125, 0.7154, 0.0721], np.float32)


class InputError(ValueError):
    """Bad input or a bad option: a one-line message naming the file and the fix."""


def _first_line(err: BaseException, limit: int = 160) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:limit] if text else ''}".rstrip(": ")


# ------------------------------------------------------------------------ 1. folders, pairs

def list_images(folder, what: str = "images", suffixes=IMAGE_SUFFIXES,
                skip_prob: bool = False) -> dict[str, Path]:
    """The image files in ``folder`` by stem (file name without extension), sorted.

    Hidden files, ``Thumbs.db``, ``desktop.ini`` and subfolders are skipped; any other file
    that is not one of ``suffixes`` is an error (move it out), as are two files with one
    stem. ``skip_prob`` skips ``*_prob.tif`` (the probability maps ``predict`` writes).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> for name in ("b.tif", "a.png", ".DS_Store"):
        ...     _ = (d / name).write_bytes(b"")
        >>> sorted(list_images(d))
        ['a', 'b']
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: no such folder; pass the folder that holds the {what}")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder; pass the folder that holds the {what}")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name.lower() in IGNORED_NAMES or path.is_dir():
            continue
        suffix = path.suffix.lower()
        if skip_prob and path.stem.endswith(PROB_SUFFIX) and suffix in (".tif", ".tiff"):
            continue
        if suffix not in suffixes:
            if suffix in (".jpg", ".jpeg"):
                raise InputError(f"{path}: a JPEG mask; JPEG compression changes the label "
                                 "values at every edge - save the masks as PNG or TIFF")
            kinds = "/".join(s[1:].upper() for s in suffixes)
            raise InputError(f"{path}: not a {kinds} file; move it out of {folder}, which "
                             f"should hold only the {what}")
        if path.stem in found:
            raise InputError(f"{path}: {found[path.stem].name} in the same folder has the "
                             "same name; keep one of them (files pair by name without the "
                             "extension)")
        found[path.stem] = path
    if not found:
        raise InputError(f"{folder}: holds no {what} (PNG or TIFF files); pass the folder "
                         f"that holds them")
    return found


def pair_files(images, masks, *, first: str = "images", second: str = "masks",
               skip_prob: bool = False) -> list[tuple[str, Path, Path]]:
    """``[(stem, image file, mask file)]`` for two folders whose files pair by stem.

    ``first``/``second`` name the folders' contents in messages; ``skip_prob`` applies to
    the first folder (a folder of predictions also holds ``*_prob.tif``).

    Example:
        >>> import tempfile
        >>> a, b = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
        >>> for path in (a / "x.png", b / "x.tif", a / "y.png"):
        ...     _ = path.write_bytes(b"")
        >>> pair_files(a, b)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        unet_teach.app.images.InputError: ...y.png: no mask named y.png or y.tif in ...
    """
    a = list_images(images, first, IMAGE_SUFFIXES if first == "images" else MASK_SUFFIXES,
                    skip_prob=skip_prob)
    b = list_images(masks, second, MASK_SUFFIXES)
    for one, other, one_name, other_name, folder in ((a, b, first, second, masks),
                                                     (b, a, second, first, images)):
        lonely = [stem for stem in one if stem not in other]
        if lonely:
            more = (f" (and {len(lonely) - 1} more {one_name} without {other_name})"
                    if len(lonely) > 1 else "")
            stem = lonely[0]
            raise InputError(f"{one[stem]}: no {other_name[:-1]} named {stem}.png or "
                             f"{stem}.tif in {folder}{more}; {one_name} and {other_name} pair "
                             "by file name without the extension - add the missing file or "
                             "move this one out")
    return [(stem, a[stem], b[stem]) for stem in a]


# ------------------------------------------------------------------------ 2. reading

@contextlib.contextmanager
def _quiet():
    # tifffile reports some damaged files through `logging` and returns an empty array;
    # that must reach the user as our one-line error, not as a stray log line.
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def read_array(path, mask: bool = False) -> np.ndarray:
    """The pixels of one file as stored: ``H x W`` or ``H x W x C`` (C = 2, 3 or 4).

    TIFF through tifffile, PNG and JPEG through Pillow. A palette PNG gives its indices for
    a mask (they are the labels) and its colours for an image; a 1-bit image gives 0/255.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> p = Path(tempfile.mkdtemp()) / "x.png"
        >>> Image.fromarray(np.full((4, 6), 7, np.uint16)).save(p)
        >>> a = read_array(p); a.shape, a.dtype
        ((4, 6), dtype('uint16'))
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with _quiet():
            if path.suffix.lower() in (".tif", ".tiff"):
                import tifffile
                arr = np.asarray(tifffile.imread(path))
            else:
                from PIL import Image
                with Image.open(path) as im:
                    im.load()                                 # decode now: finds truncation
                    if im.mode == "1" or (im.mode in ("P", "PA") and not mask):
                        im = im.convert("L" if im.mode == "1" else "RGBA")
                    elif im.mode == "CMYK":
                        im = im.convert("RGB")
                    arr = np.asarray(im)
    except Exception as err:                  # any reader's way of saying "not an image"
        raise InputError(f"{path}: cannot be read as an image ({_first_line(err)}); is it "
                         "a complete PNG or TIFF file? export it again") from err
    arr = np.squeeze(arr) if arr.ndim > 2 else arr
    if arr.ndim == 3 and arr.shape[0] in (2, 3, 4) and arr.shape[-1] > 4:
        arr = np.moveaxis(arr, 0, -1)                         # planar C x H x W -> H x W x C
    if arr.size == 0 or arr.ndim < 2:
        raise InputError(f"{path}: holds no pixels (shape {arr.shape}); is it a complete "
                         "image file? export it again")
    if arr.ndim == 3 and arr.shape[-1] > 4 or arr.ndim > 3:
        raise InputError(f"{path}: holds a stack of images (shape {arr.shape}); save one "
                         "2-D image per file (grey or RGB)")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
            or arr.dtype == bool):
        raise InputError(f"{path}: pixels of type {arr.dtype}; save it as an 8- or 16-bit "
                         "grey or RGB image")
    return arr


def to_channels(arr: np.ndarray, channels: int, path) -> tuple[np.ndarray, str | None]:
    """Float32 ``C x H x W`` with ``channels`` channels from ``read_array``'s ``H x W [x C]``,
    and a note when the colours were changed (``"rgb->grey"`` or ``"grey->rgb"``).

    An alpha channel is dropped; RGB becomes grey by skimage's luma weights (an RGB file whose
    three channels are equal is grey already, and no note is made).

    Example:
        >>> rgb = np.zeros((2, 2, 3), np.uint8); rgb[..., 0] = 255
        >>> grey, note = to_channels(rgb, 1, "x.png")
        >>> grey.shape, round(float(grey.max()), 4), note
        ((1, 2, 2), 54.1875, 'rgb->grey')
    """
    img = arr.astype(np.float32)
    img = img[..., None] if img.ndim == 2 else img
    if img.shape[-1] in (2, 4):
        img = img[..., :-1]                                       # drop alpha
    img = np.moveaxis(img, -1, 0)                                 # C x H x W
    note = None
    if img.shape[0] == channels:
        return np.ascontiguousarray(img), note
    if img.shape[0] == 3 and channels == 1:
        if not (np.array_equal(img[0], img[1]) and np.array_equal(img[1], img[2])):
            note = "rgb->grey"
        img = np.tensordot(_RGB_WEIGHTS, img, axes=1)[None]
    elif img.shape[0] == 1 and channels == 3:
        img, note = np.repeat(img, 3, axis=0), "grey->rgb"
    else:
        raise InputError(f"{path}: has {img.shape[0]} channels but the model takes "
                         f"{channels}; save it as a grey or RGB image")
    return np.ascontiguousarray(img, dtype=np.float32), note


def normalize(image: np.ndarray, normalization: dict = NORMALIZATION) -> np.ndarray:
    """Scale one image to [0, 1] as ``normalization`` says (see ``NORMALIZATION``).

    Per image over all its channels: ``(x - p_low) / (p_high - p_low)``, clipped to [0, 1];
    a constant image becomes 0.

    Example:
        >>> normalize(np.arange(1001, dtype=np.float32))[[0, 10, 500, 998, 1000]].round(3)
        array([0.   , 0.   , 0.496, 1.   , 1.   ], dtype=float32)
    """
    if normalization.get("method") != "percentile":
        raise InputError(f"unknown normalisation {normalization!r}; this unet-teach knows "
                         "'percentile' - the model file is from a newer version?")
    lo, hi = np.percentile(image, [normalization["low"], normalization["high"]])
    scaled = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    return np.clip(scaled, 0, 1).astype(np.float32)


def load_image(path, channels: int, normalization: dict = NORMALIZATION
               ) -> tuple[np.ndarray, str | None]:
    """Read, convert to ``channels`` and normalise: float32 ``C x H x W`` in [0, 1], and the
    colour note of :func:`to_channels`."""
    image, note = to_channels(read_array(path), channels, path)
    return normalize(image, normalization), note


def read_mask(path) -> np.ndarray:
    """A mask file as int64 ``H x W`` labels, checked to be a class mask.

    Rejected, each with its fix: colour masks whose R, G and B differ, fractional or negative
    values, more than ``MAX_CLASSES`` different values, and values that look interpolated -
    a mask with a few values that are not 0..K-1, where a value lying between two others
    occurs only on the edges between other values (what resizing a 0/255 mask does).

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> p = Path(tempfile.mkdtemp()) / "m.png"
        >>> m = np.zeros((8, 8), np.uint8); m[2:6, 2:6] = 255
        >>> Image.fromarray(m).save(p)
        >>> np.unique(read_mask(p)).tolist()
        [0, 255]
        >>> m[1, 2:6] = 128                  # a blurred edge
        >>> Image.fromarray(m).save(p)
        >>> read_mask(p)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        unet_teach.app.images.InputError: ... value 128 occurs only on the edges between other values ...
    """
    arr = read_array(path, mask=True)
    if arr.ndim == 3:
        colour = arr[..., :3] if arr.shape[-1] >= 3 else arr[..., :1]
        if any(not np.array_equal(colour[..., 0], colour[..., c])
               for c in range(1, colour.shape[-1])):
            raise InputError(f"{path}: a colour mask (R, G and B differ); save the mask as a "
                             "single-channel image with one integer label per class")
        arr = colour[..., 0]
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise InputError(f"{path}: holds fractional values; a mask holds one integer "
                             "label per pixel - save it as an 8- or 16-bit integer image")
    values, counts = np.unique(arr, return_counts=True)
    if values[0] < 0:
        raise InputError(f"{path}: holds negative values ({values[0]:g}); labels are "
                         "0, 1, 2, ... or 0/255")
    if len(values) > MAX_CLASSES:
        shown = ", ".join(f"{v:g}" for v in values[:6])
        raise InputError(f"{path}: {len(values)} different values ({shown}, ...), but a "
                         f"class mask holds a few (0/255, or 0..K-1, at most {MAX_CLASSES}); "
                         "this looks like JPEG compression, resizing with interpolation, or "
                         "an instance mask - save the masks as PNG/TIFF without resizing (one "
                         "id per object? use mask > 0)")
    labels = arr.astype(np.int64)
    _check_not_interpolated(path, labels, values.astype(np.int64))
    return labels


def _check_not_interpolated(path, labels: np.ndarray, values: np.ndarray) -> None:
    # 0..K-1 may well have a thin middle class (e.g. 0 = background, 1 = boundary,
    # 2 = inside), so only masks with other values (0/128/255, ...) are suspected.
    if len(values) < 3 or np.array_equal(values, np.arange(len(values))):
        return
    for v in values[1:-1]:
        inside = ndimage.binary_erosion(labels == v, border_value=1)
        if not inside.any():
            raise InputError(f"{path}: value {v} occurs only on the edges between other "
                             f"values ({values.tolist()}), as when a mask is resized or "
                             "blurred; resize masks with nearest-neighbour interpolation, or "
                             "not at all")


def class_values(masks: dict[str, np.ndarray], files: dict[str, Path]) -> list[int]:
    """The sorted mask values over all masks: class ``i`` is the value ``values[i]``.

    Example:
        >>> class_values({"a": np.array([[0, 255]]), "b": np.array([[0, 0]])},
        ...              {"a": Path("a.png"), "b": Path("b.png")})
        [0, 255]
    """
    seen: set[int] = set()
    for stem, mask in masks.items():
        seen |= set(np.unique(mask).tolist())
        if len(seen) > MAX_CLASSES:
            raise InputError(f"{files[stem]}: brings the masks to {len(seen)} different "
                             f"values, more than {MAX_CLASSES} classes; check that all masks "
                             "use the same labels (e.g. all 0/255)")
    if len(seen) < 2:
        folder = next(iter(files.values())).parent
        raise InputError(f"{folder}: every mask holds only the value {min(seen)}, so there "
                         "is nothing to learn; the masks must mark the objects (e.g. 0 = "
                         "background, 255 or 1 = object)")
    return sorted(int(v) for v in seen)


def check_same_size(image_path, image: np.ndarray, mask_path, mask: np.ndarray) -> None:
    """Raise an :class:`InputError` unless the mask has the image's height and width."""
    if image.shape[-2:] != mask.shape[-2:]:
        (h, w), (mh, mw) = image.shape[-2:], mask.shape[-2:]
        raise InputError(f"{mask_path}: is {mw} x {mh} px but its image {image_path} is "
                         f"{w} x {h} px; a mask must have its image's size (resize neither, "
                         "or the mask with nearest-neighbour interpolation)")


# ------------------------------------------------------------------------ 3. writing

def check_outputs(paths, force: bool) -> None:
    """Raise an :class:`InputError` if one of ``paths`` exists and ``force`` is not set."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            raise InputError(f"{path}: is a folder; choose another output name")
        if path.exists() and not force:
            raise InputError(f"{path}: exists; pass --force to overwrite it, or choose "
                             "another output")


def write_mask(path, labels: np.ndarray) -> Path:
    """Write integer labels as a PNG (8-bit if every value fits, else 16-bit), atomically.

    Example:
        >>> import tempfile
        >>> p = write_mask(Path(tempfile.mkdtemp()) / "m.png", np.array([[0, 255]]))
        >>> read_mask(p).tolist()
        [[0, 255]]
    """
    from PIL import Image
    labels = np.asarray(labels)
    dtype = np.uint8 if labels.max(initial=0) <= 255 else np.uint16
    image = Image.fromarray(np.ascontiguousarray(labels, dtype=dtype))
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))


def write_tiff(path, array: np.ndarray) -> Path:
    """Write a float32 array (``H x W`` or ``K x H x W``) as a TIFF, atomically."""
    import tifffile
    array = np.ascontiguousarray(array, dtype=np.float32)
    # minisblack: K maps are K grey pages, not one RGB picture when K = 3
    return write_atomic(path, lambda tmp: tifffile.imwrite(tmp, array, photometric="minisblack"))
