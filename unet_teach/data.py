"""Data for the book: two synthetic sets made on the fly, and the real ISBI 2012 EM slices.

Every loader returns numpy arrays with one convention, so chapters can swap data sets:

* ``images`` - float32, ``N x H x W``, values in [0, 1];
* ``masks``  - int64, ``N x H x W``, one class index per pixel.

For the membrane sets (synthetic and ISBI) the classes are **1 = membrane (cell boundary)**
and **0 = cell interior**: the thin class is the one we care about, and it is the minority.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

# ----------------------------------------------------------------------------- synthetic


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to zero mean, unit std (``size x size``)."""
    field = ndi.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-8)


def _voronoi_cells(rng: np.random.Generator, size: int, n_cells: int) -> np.ndarray:
    """Label every pixel with its nearest seed point (a Voronoi tessellation), ``H x W`` int."""
    seeds = np.ones((size, size), dtype=bool)
    ys, xs = rng.integers(0, size, n_cells), rng.integers(0, size, n_cells)
    seeds[ys, xs] = False                      # the EDT measures distance to the zeros
    _, (iy, ix) = ndi.distance_transform_edt(seeds, return_indices=True)
    ids = np.zeros((size, size), dtype=np.int64)
    ids[ys, xs] = np.arange(1, n_cells + 1)
    return ids[iy, ix]


def _boundaries(labels: np.ndarray) -> np.ndarray:
    """True where a pixel touches a pixel of another label (4-neighbourhood), ``H x W`` bool."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[1:, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:, 1:] |= labels[:, :-1] != labels[:, 1:]
    return edge


def _stripes(rng: np.random.Generator, cells: np.ndarray, membrane: np.ndarray,
             share: float) -> np.ndarray:
    """Parallel dark stripes in about ``share`` of the cells, ``H x W`` bool: 2-3 px thick,
    6-8 px apart (centre to centre), each cell its own direction; 4 or more 4-connected
    steps from any membrane, so that no stripe pixel is near a boundary of the labels."""
    k = cells.max() + 1
    striped = rng.random(k) < share                        # which cells (ids 1..k-1)
    angle = rng.uniform(0, np.pi, k)[cells]
    period = rng.uniform(6.0, 8.0, k)[cells]
    phase = rng.uniform(0, 8.0, k)[cells]
    yy, xx = np.mgrid[0:cells.shape[0], 0:cells.shape[1]]
    across = xx * np.cos(angle) + yy * np.sin(angle) + phase   # distance across the stripes
    core = ~ndi.binary_dilation(membrane, iterations=3)
    return striped[cells] & core & (np.mod(across, period) < 2.5)


def _check_args(n: int, size: int, smallest: int) -> None:
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not (isinstance(size, (int, np.integer)) and size >= smallest):
        raise ValueError(f"size must be an integer >= {smallest}, got {size!r}")


def synthetic_membranes(n: int = 8, size: int = 128, seed: int = 0,
                        dark_texture: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """EM-like images: cells with thin dark membranes, textured interiors, blur and noise.

    Each image is a random Voronoi tessellation (the cells); pixels on a border between two
    cells, thickened to 2-3 px, are membrane. Interiors get a smooth grey texture and a few
    dark blobs (like mitochondria and vesicles, which a good classifier must *not* call
    membrane); then the whole image is blurred and noise is added. Deterministic per ``seed``.

    With ``dark_texture > 0`` that share of the cells (on average) is also filled with
    parallel dark **stripes**, as thin and as dark as membrane, 6-8 px apart, kept at least
    4 px (4-connected steps) from the cell's membrane (like stacked endoplasmic reticulum). They are labelled
    interior. A window smaller than the spacing of the stripes, centred on one, sees a dark
    line between light pixels, just as on a membrane; only a wider view shows the parallel
    neighbours that give it away. The cells, masks and noise are those of the same ``seed``
    without stripes; the default, 0, makes exactly the images it always made.

    Args:
        n, size: ``n`` images of ``size x size`` pixels.
        seed: seeds every random choice.
        dark_texture: the chance that a cell is striped (0 to 1).

    Returns:
        ``(images, masks)``: images float32 ``n x size x size`` in [0, 1]; masks int64
        ``n x size x size`` with 1 = membrane, 0 = cell interior.

    Example:
        >>> images, masks = synthetic_membranes(4, 64, seed=1)
        >>> images.shape, images.dtype, masks.dtype, set(np.unique(masks)) <= {0, 1}
        ((4, 64, 64), dtype('float32'), dtype('int64'), True)
        >>> striped, same_masks = synthetic_membranes(4, 64, seed=1, dark_texture=0.5)
        >>> bool((same_masks == masks).all()), bool((striped != images).any())
        (True, True)
    """
    _check_args(n, size, 16)
    if not 0.0 <= dark_texture <= 1.0:
        raise ValueError(f"dark_texture is the share of striped cells, between 0 and 1; "
                         f"got {dark_texture!r}")
    rng = np.random.default_rng(seed)
    texture_rng = np.random.default_rng([seed, 1])
    images = np.empty((n, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=np.int64)
    for i in range(n):
        # about one cell per 24x24 px, as in the ISBI slices at this scale
        cells = _voronoi_cells(rng, size, max(4, int(rng.normal(1.0, 0.15) * size * size / 600)))
        membrane = _boundaries(cells)
        # wobble the thickness: dilate a random half of the membrane once more
        thick = ndi.binary_dilation(membrane) & (_smooth_noise(rng, size, 6) > 0)
        membrane |= thick

        # interior: each cell its own grey level, plus a smooth texture
        cell_grey = rng.uniform(0.45, 0.85, cells.max() + 1)[cells]
        img = cell_grey + 0.08 * _smooth_noise(rng, size, 1.5)
        # dark organelles inside the cells, as dark as membrane: a pixel's grey value alone
        # cannot tell them apart; their round shape (context) can
        inside = ~ndi.binary_dilation(membrane, iterations=3)
        blobs = (_smooth_noise(rng, size, 2.5) > 1.7) & inside
        dark = rng.uniform(0.12, 0.3)                        # this image's membrane darkness
        img[blobs] = dark + rng.normal(0, 0.05, blobs.sum())
        img[membrane] = dark + rng.normal(0, 0.05, membrane.sum())
        if dark_texture > 0:
            # a generator of their own: the cells, masks and noise stay those of the default
            stripes = _stripes(texture_rng, cells, membrane, dark_texture)
            img[stripes] = dark + texture_rng.normal(0, 0.05, stripes.sum())
        # uneven illumination across the field
        ramp = np.linspace(-1, 1, size)
        img += rng.uniform(-0.12, 0.12) * ramp[:, None] + rng.uniform(-0.12, 0.12) * ramp[None, :]
        img = ndi.gaussian_filter(img, 1.0)               # the microscope's blur
        img += rng.normal(0, 0.07, img.shape)             # shot / detector noise
        images[i] = np.clip(img, 0, 1)
        masks[i] = membrane
    return images, masks


def synthetic_nuclei(n: int = 8, size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fluorescence-like images: bright, often touching nuclei on a dark, unevenly lit field.

    Nuclei are random ellipses; where two overlap, each pixel goes to the nucleus whose
    (scaled) centre is nearest, so touching nuclei meet along a line with no gap - the case
    U-Net's weight maps are made for. Illumination falls off across the field, and the
    noise is Poisson-like (stronger where it is brighter). Deterministic per ``seed``.

    Returns:
        ``(images, masks, instances)``: images float32 ``n x size x size`` in [0, 1];
        masks int64 (1 = nucleus, 0 = background); instances int64 (0 = background,
        1..k = one id per nucleus).

    Example:
        >>> images, masks, instances = synthetic_nuclei(2, 64, seed=3)
        >>> bool(((instances > 0) == (masks == 1)).all())
        True
    """
    _check_args(n, size, 16)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((n, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=np.int64)
    instances = np.empty((n, size, size), dtype=np.int64)
    for i in range(n):
        k = int(rng.integers(max(2, size * size // 1400), max(3, size * size // 700) + 1))
        best = np.full((size, size), np.inf, dtype=np.float32)   # smallest scaled distance so far
        inst = np.zeros((size, size), dtype=np.int64)
        brightness = np.zeros((size, size), dtype=np.float32)
        for j in range(1, k + 1):
            cy, cx = rng.uniform(0.05, 0.95, 2) * size
            a, b = rng.uniform(0.05, 0.1, 2) * size              # semi-axes
            t = rng.uniform(0, np.pi)
            dy, dx = yy - cy, xx - cx
            u = (dx * np.cos(t) + dy * np.sin(t)) / a
            v = (-dx * np.sin(t) + dy * np.cos(t)) / b
            r = np.sqrt(u * u + v * v)                              # < 1 inside the ellipse
            take = (r < 1) & (r < best)
            best[take], inst[take] = r[take], j
            brightness[take] = rng.uniform(0.55, 1.0)
        # chromatin texture inside nuclei, dimmer towards the rim
        texture = 1 + 0.15 * _smooth_noise(rng, size, 1.5)
        signal = brightness * texture * (1 - 0.3 * np.clip(best, 0, 1) ** 2)
        signal = ndi.gaussian_filter(np.where(inst > 0, signal, 0.0), 1.0)
        light = 1 - 0.45 * (xx / size * np.cos(rng.uniform(0, 2 * np.pi))
                            + yy / size * np.sin(rng.uniform(0, 2 * np.pi))) ** 2
        img = 0.06 + 0.8 * signal * light
        img = rng.poisson(np.clip(img, 0, None) * 200) / 200.0      # photon noise
        img += rng.normal(0, 0.02, img.shape)                       # read-out noise
        images[i] = np.clip(img, 0, 1)
        # renumber ids 1..m in order of appearance so ids are contiguous
        ids = np.unique(inst[inst > 0])
        lut = np.zeros(k + 1, dtype=np.int64)
        lut[ids] = np.arange(1, len(ids) + 1)
        instances[i] = lut[inst]
        masks[i] = inst > 0
    return images, masks, instances


def check_stack(images, masks):
    """Check a stack of images and their masks; return the images with a channel axis.

    ``images``: ``N x H x W`` (a channel axis is added) or ``N x C x H x W``; ``masks``:
    ``N x H x W``, one per image and of the same size. numpy arrays or torch tensors.

    Example:
        >>> check_stack(np.zeros((2, 8, 8)), np.zeros((2, 8, 8), int)).shape
        (2, 1, 8, 8)
    """
    if images.ndim == 3:
        images = images[:, None]                                   # N x 1 x H x W
    if images.ndim != 4 or masks.ndim != 3:
        raise ValueError(f"images must be N x H x W or N x C x H x W and masks N x H x W, got "
                         f"{tuple(images.shape)} and {tuple(masks.shape)}")
    if images.shape[0] != masks.shape[0] or images.shape[-2:] != masks.shape[-2:]:
        raise ValueError(f"images {tuple(images.shape)} and masks {tuple(masks.shape)} do not "
                         "match in number or size: one H x W mask per image")
    return images


def separate_touching(instances: np.ndarray) -> np.ndarray:
    """Open a one-pixel gap wherever two cells touch, as in the U-Net paper's labels.

    Every cell pixel that has a pixel of *another* cell in its 3 x 3 neighbourhood becomes
    background (0). Touching cells in :func:`synthetic_nuclei` meet along a line with no gap,
    so a semantic (cell / background) mask would glue them into one connected component
    and even a perfect prediction of it could not tell them apart; with the gap it can.

    Args:
        instances: int ``H x W`` or ``N x H x W`` (0 = background, 1..k = cells).

    Returns:
        The same shape and dtype, with the contact pixels set to 0.

    Example:
        >>> inst = np.array([[1, 1, 2, 2],
        ...                  [1, 1, 2, 2]])
        >>> separate_touching(inst)
        array([[1, 0, 0, 2],
               [1, 0, 0, 2]])
    """
    instances = np.asarray(instances)
    if instances.ndim not in (2, 3) or not np.issubdtype(instances.dtype, np.integer):
        raise ValueError(f"expected an integer H x W or N x H x W instance map, got "
                         f"{instances.dtype} {instances.shape}")
    if instances.ndim == 3:
        return np.stack([separate_touching(x) for x in instances])
    # Within a 3 x 3 window a pixel touches another cell if the window's largest or smallest
    # cell id differs from its own (background is kept out of the minimum by a large fill).
    ids = instances.astype(np.int64)
    hi = ndi.maximum_filter(ids, size=3, mode="nearest")
    lo = ndi.minimum_filter(np.where(ids > 0, ids, ids.max() + 1), size=3, mode="nearest")
    contact = (ids > 0) & ((hi != ids) | (lo != ids))
    return np.where(contact, 0, instances).astype(instances.dtype)


# ----------------------------------------------------------------------------- ISBI 2012

ISBI_SLICES = range(25)   # slices 00-24 of the challenge's training stack; 25-29 stay unseen

# SHA-256 of every file, relative to ``isbi2012/train/`` (the data's SHA256SUMS file).
_ISBI_SUMS = """
12c0ed6f42fc09f512abf6b354f217c950e4c8223b57a0315449b62a14556523  images/00.png
2cfc7ee635a6f85d5faf5c82a71d3a37bf5af4784b554964e3e07193e3ee2166  images/01.png
fe60d8d4f93102666a23a18d718b4b59fab8e616987d11c5072f4a87fac7301f  images/02.png
636d16cbb02f99dda4c9fb6db98dfba066142afa981ffdcfaf54453982e8250c  images/03.png
991fb3a8e4abc73da1d6159ca28fa4397f0a8351f30a8ba3669c86414d2ce239  images/04.png
7e9d9fb787664336d6f2cd68b23986f04527e7f8f494410983b4d70c6de1de3b  images/05.png
7c0a87933ffc72f4ff02f5996d9c3f69fe9a0b5277507415743ad8afb5e5d308  images/06.png
19f2c25716107d41008c83ba8a814ae47a090e00dea766dde38dce1f00899270  images/07.png
a8979e4abd1a10af9ca75e614d97875659adbd8ee3a68eba483bf556cfe3023d  images/08.png
730ebf435ab0f6e625d342552ad03736799fd660d0c6af744674c61a46aa082a  images/09.png
7c3717bcd48c4b7e5c878d7f0b809b8687a4e6fac471f3863de320a82ee72b8a  images/10.png
dd7857b25ca1417f87c282750e22c50947f75e81fa032d4e0c96b902c9dc9757  images/11.png
9f8eff9239bb764d51524a998387a7babcff9f62161804651b030b81aabd5ab8  images/12.png
377e5cdbcd7f0ac7336f482fc7ead7446887863f26769b3841fe98aadca77dad  images/13.png
f50d2d77acd2df564c5f0f40b1b24cd929f5944460aa4cd90c422cb5cef33a59  images/14.png
3e13fdea09accc14f46fb2f3ffa1e882cdd9c53b28a6842c4c10229692c7d1a4  images/15.png
ffc951c12450f94129582c16fd0d4b165c4a31469b0c42d966f07c183d3132e2  images/16.png
0f4f7e8e0619e4c7d517ac68d3789a3b6248253747717eac418bb7d32bef4de3  images/17.png
1bb1edd50595861743d14e1955dfa5d3c9395fb87563eca6dc81433bf9df49de  images/18.png
999b55633f8d7082add72082656e9532c5c3d97203b376eb317f09ba88a5a5b7  images/19.png
9153d14bfd15955fab576ea23281c4f23104b45dceed6e03e0b254607f50a1b2  images/20.png
9ad07cf4f67984f17a08aa63e6d92d395ce55f5132e6ff4fa6d95d6890ea7f97  images/21.png
6278609b4c42a7cb43212de0e2e2ceded758bafe0856fb56214ce658a61668e4  images/22.png
9ef4e9fbc838b9791af83a36918d729a0ea2e90ebc71c4a3c4554059f9379756  images/23.png
f0f917b9c3e9c96d16ea287aff9b05ecf4de88bc61d478e4aefcb64932fba70c  images/24.png
13b67edd7607a1f284c09170c96a27d38422b0ffaf88024ea5b689acb5e1b4b0  labels/00.png
cff60a00de2901e67165c91d7708d784e4c5bcc9d1c8c677922c905d63bbc3d1  labels/01.png
a578af998c017f56763b81941c4dc612dde5731809b2cea0e8ebc37aecb84dbb  labels/02.png
c8ae3b843fed02e09411a24c10850160922c331041b17c2674025f05a99b8834  labels/03.png
a2f19c01b5d982a97923a0d29e64127a05e3f496731480ac9d9d302b5427f7ff  labels/04.png
2dd5779118f6f4d87f88ec112f1cea20663b50acb8c748b0db1f23eda82b5118  labels/05.png
2b0984e9f31fb41d4c5f4a754a3e080036b7321a0cbd9591a62010d20a574ce7  labels/06.png
2ebc8c835999589bfd7d80d81f83d24e5c41138362b0faafef0f009e1ce82144  labels/07.png
db979010ca4fbdb38c8b32d455aed0da90d598153f2a0046b63d02a6efa32b9e  labels/08.png
8ee6c79adbb740595c4d61776e065e7164c00d52c7dd7562b5279041e7f3567b  labels/09.png
b0156cc8186b0ee521927ac95645b406a42d27564607a6fea3a59c34add78f7c  labels/10.png
e47b3aa0cfb3106476af1666e631d45bd16dbf2aff88260ee65d16e4134332db  labels/11.png
85a7a899c0b72b81633ad122887ba5161d650385d7775a5b3074eb00131b3620  labels/12.png
88549c22fd647312d6b37e17d33e90800d347d60ccb1156a8dde5e67394f9f3d  labels/13.png
bcd775017eb4fdbdfe7ad6cc6420b2f16aa9d0576894d08370edcf564b46680a  labels/14.png
59a854887b504ff00a5b4b93b2299bbc0bf0cbe54dea58d2b31969229b28b369  labels/15.png
b34eb88cdc3313a6f4190f5753465df7f69d8f3c243a5c25427b1b99ecfe2499  labels/16.png
4fa076cbeb744803d987dc46cf308dc3026408e7a5188838e30e25fe3ea67dbe  labels/17.png
bd009dda57f204804732f592ed1d41ba18961d83c492413fe71548efa4a288d9  labels/18.png
bf38407c55b6033c1677230228ecb100a11294aa74a7b92e5edfdc4abadcfef9  labels/19.png
7af7296f2e892866669d4e4f9c0d4178987e6ec6e7d0751ec238d1bbe2da9c55  labels/20.png
772c722acb2eac01769b53fa5037a3d62745e53102398bf9b2202df605cadda4  labels/21.png
b19f5533ec24077a2395a085fe53af75dd350ef03798c4ff40ba9ebecb2ee0ad  labels/22.png
2d8f1df5c9ee83e59eb2d709eb153b0570f12e726690f586154b01b0a88bb540  labels/23.png
6ab02d922b5c937ecfe2a479be87a5d3e5ef950dc48da09d31f37b47d899ca9c  labels/24.png
"""

ISBI_SHA256 = {name: digest for digest, name in
               (line.split() for line in _ISBI_SUMS.strip().splitlines())}

#: Where missing slices are downloaded from: a public repository that redistributes the
#: challenge's training stack as PNG slices (file ``N.png``, N = 0..29, not zero-padded),
#: at a fixed commit rather than a branch, so what a URL names cannot move (the hashes
#: above would catch a change, but only by failing).
ISBI_COMMIT = "909ae9b5fefd8a55900e24a771b073b1d4ef70ff"
ISBI_BASE_URL = (f"https://raw.githubusercontent.com/zhixuhao/unet/{ISBI_COMMIT}"
                 "/data/membrane/train")


class DataError(RuntimeError):
    """The data files are missing, corrupt or cannot be fetched; the message says what to do."""


def default_data_dir() -> Path:
    """The data directory: ``$UNET_TEACH_DATA`` if set, else a per-user cache folder.

    The directory holds ``isbi2012/train/{images,labels}/NN.png``.

    Example:
        >>> isinstance(default_data_dir(), Path)
        True
    """
    env = os.environ.get("UNET_TEACH_DATA")
    if env:
        return Path(env).expanduser()
    import pooch
    return Path(pooch.os_cache("unet-teach"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _remote_name(rel: str) -> str:
    """``images/07.png`` -> ``image/7.png``: the source repository's layout."""
    folder, name = rel.split("/")
    return f"{folder[:-1]}/{int(name[:-4])}.png"


def isbi2012_status(root: str | os.PathLike | None = None) -> dict[str, str]:
    """Check each ISBI file without downloading: ``{relative path: "ok"|"missing"|"corrupt"}``.

    Example:
        >>> status = isbi2012_status("/nonexistent")
        >>> status["images/00.png"]
        'missing'
    """
    base = (Path(root) if root is not None else default_data_dir()) / "isbi2012" / "train"
    out = {}
    for rel, digest in ISBI_SHA256.items():
        path = base / rel
        out[rel] = "missing" if not path.is_file() else ("ok" if _sha256(path) == digest else "corrupt")
    return out


def _fetch_missing(base: Path, missing: list[str], base_url: str) -> None:
    """Download ``missing`` files into ``base`` with pooch, each checked against its SHA-256."""
    import pooch
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create the data folder {base} ({err}); set UNET_TEACH_DATA "
                        "to a writable folder") from err
    for rel in missing:
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            pooch.retrieve(url=f"{base_url}/{_remote_name(rel)}", known_hash=f"sha256:{ISBI_SHA256[rel]}",
                           fname=Path(rel).name, path=base / Path(rel).parent, progressbar=False)
        except ValueError as err:
            if "hash" not in str(err).lower():   # a malformed URL is a ValueError too
                raise DataError(f"could not download {rel} from {base_url!r} ({err}); check "
                                f"the URL, or copy the 25 slices into {base}/images/ and "
                                f"{base}/labels/ by hand (00.png ... 24.png)") from err
            # pooch: the downloaded file's hash does not match (pooch deletes the file)
            raise DataError(f"the download of {rel} from {base_url} did not match its SHA-256; "
                            f"the source may have changed. {err}") from err
        except Exception as err:           # no network, HTTP error, ...
            raise DataError(
                f"could not download the ISBI 2012 file {rel} from {base_url} ({type(err).__name__}: {err}).\n"
                f"Without network, copy the 25 slices into {base}/images/00.png ... 24.png and "
                f"{base}/labels/00.png ... 24.png (8-bit PNGs; labels 255 = interior, 0 = membrane), "
                "or point UNET_TEACH_DATA at a folder that holds isbi2012/train/.") from err


def load_isbi2012(root: str | os.PathLike | None = None, *, download: bool = True,
                  base_url: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 25 ISBI 2012 EM training slices 00-24 and their membrane masks.

    The files are looked for in ``root/isbi2012/train/``; ``root`` defaults to
    ``$UNET_TEACH_DATA``, else a per-user cache folder. Every file's SHA-256 is checked. A
    missing file is downloaded (with pooch, hash-checked) when ``download`` is true and there
    is network; a file that exists but fails its check is never overwritten: you are told to
    delete it.

    Args:
        root: a folder that holds ``isbi2012/``.
        download: fetch missing files (``False``: raise instead).
        base_url: where to fetch from (default ``ISBI_BASE_URL`` or ``$UNET_TEACH_ISBI_URL``).

    Returns:
        ``(images, masks)``: images float32 ``25 x 512 x 512`` in [0, 1]; masks int64
        ``25 x 512 x 512`` with 1 = membrane, 0 = cell interior.

    Raises:
        DataError: a file is corrupt, or missing and cannot be downloaded.

    Example:
        >>> images, masks = load_isbi2012()          # doctest: +SKIP
        >>> images.shape, masks.mean().round(2)       # doctest: +SKIP
        ((25, 512, 512), 0.22)
    """
    from PIL import Image
    base = (Path(root) if root is not None else default_data_dir()) / "isbi2012" / "train"
    status = isbi2012_status(base.parent.parent)
    corrupt = [rel for rel, s in status.items() if s == "corrupt"]
    if corrupt:
        raise DataError(f"{len(corrupt)} ISBI 2012 file(s) in {base} fail their SHA-256 check "
                        f"({', '.join(corrupt[:4])}{' ...' if len(corrupt) > 4 else ''}). "
                        "Delete them and load again to download fresh copies, or copy them "
                        "again from a good source.")
    missing = [rel for rel, s in status.items() if s == "missing"]
    if missing:
        if not download:
            raise DataError(f"{len(missing)} ISBI 2012 file(s) missing in {base} (e.g. {missing[0]}); "
                            "call with download=True or set UNET_TEACH_DATA to a folder that "
                            "holds isbi2012/train/")
        url = base_url or os.environ.get("UNET_TEACH_ISBI_URL") or ISBI_BASE_URL
        _fetch_missing(base, missing, url.rstrip("/"))

    images = np.empty((len(ISBI_SLICES), 512, 512), dtype=np.float32)
    masks = np.empty((len(ISBI_SLICES), 512, 512), dtype=np.int64)
    for i in ISBI_SLICES:
        img = np.asarray(Image.open(base / f"images/{i:02d}.png").convert("L"))
        lab = np.asarray(Image.open(base / f"labels/{i:02d}.png").convert("L"))
        images[i] = img / 255.0
        masks[i] = lab < 128           # 0 (dark) in the label file is membrane -> class 1
    return images, masks


