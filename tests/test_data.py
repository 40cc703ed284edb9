"""The synthetic data sets and the ISBI 2012 loader (local files, hash checks, downloads)."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import socket
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from unet_teach import data as data_mod
from unet_teach.data import (ISBI_SHA256, ISBI_SLICES, DataError, default_data_dir,
                             isbi2012_status, load_isbi2012, synthetic_membranes,
                             synthetic_nuclei)

# ============================================================================ synthetic


@pytest.mark.parametrize("make", [synthetic_membranes, synthetic_nuclei],
                         ids=["membranes", "nuclei"])
def test_synthetic_is_deterministic_per_seed(make):
    a = make(3, 48, seed=7)
    b = make(3, 48, seed=7)
    c = make(3, 48, seed=8)
    assert len(a) == len(b) == len(c)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])      # images differ
    assert not np.array_equal(a[1], c[1])      # masks differ
    # and images within one call differ from each other
    assert not np.array_equal(a[0][0], a[0][1])


@pytest.mark.parametrize("n, size", [(1, 16), (4, 64), (2, 100)])
def test_synthetic_membranes_types_shapes_ranges(n, size):
    images, masks = synthetic_membranes(n, size, seed=1)
    assert images.shape == masks.shape == (n, size, size)
    assert images.dtype == np.float32 and masks.dtype == np.int64
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert np.isfinite(images).all()
    assert set(np.unique(masks)) <= {0, 1}


def test_synthetic_membranes_look_like_membranes():
    images, masks = synthetic_membranes(16, 128, seed=0)
    fraction = masks.mean(axis=(1, 2))
    print(f"membrane fraction per image: {fraction.min():.3f} .. {fraction.max():.3f}")
    assert 0.08 <= fraction.min() and fraction.max() <= 0.35
    # membranes are dark: the mean image value on membrane is well below the interior's
    assert images[masks == 1].mean() < images[masks == 0].mean() - 0.2
    # membrane pixels form a connected-ish network that splits the image into several cells
    n_cells = [ndi.label(m == 0)[1] for m in masks]
    assert min(n_cells) >= 4


def test_synthetic_membranes_defaults():
    images, masks = synthetic_membranes()
    assert images.shape == masks.shape == (8, 128, 128)
    np.testing.assert_array_equal(images, synthetic_membranes(8, 128, seed=0)[0])


@pytest.mark.parametrize("n, size", [(1, 16), (3, 64), (2, 128)])
def test_synthetic_nuclei_types_shapes_ranges(n, size):
    images, masks, instances = synthetic_nuclei(n, size, seed=2)
    assert images.shape == masks.shape == instances.shape == (n, size, size)
    assert images.dtype == np.float32
    assert masks.dtype == np.int64 and instances.dtype == np.int64
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert set(np.unique(masks)) <= {0, 1}
    assert instances.min() >= 0


def test_synthetic_nuclei_instances_match_masks_and_ids_are_contiguous():
    images, masks, instances = synthetic_nuclei(12, 96, seed=5)
    np.testing.assert_array_equal(instances > 0, masks == 1)
    for inst in instances:
        ids = np.unique(inst[inst > 0])
        assert len(ids) >= 2
        np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))
    # nuclei are brighter than the background
    assert images[masks == 1].mean() > images[masks == 0].mean() + 0.2


def _touching_pairs(inst: np.ndarray) -> int:
    """Number of distinct pairs of different nuclei that share a 4-neighbour border."""
    pairs = set()
    for a, b in ((inst[:-1, :], inst[1:, :]), (inst[:, :-1], inst[:, 1:])):
        touch = (a > 0) & (b > 0) & (a != b)
        pairs |= {tuple(sorted(p)) for p in zip(a[touch].tolist(), b[touch].tolist())}
    return len(pairs)


def test_synthetic_nuclei_has_touching_nuclei():
    _, _, instances = synthetic_nuclei(8, 128, seed=0)
    touching = [_touching_pairs(inst) for inst in instances]
    print("touching pairs per image:", touching)
    assert sum(touching) >= 4
    assert sum(t > 0 for t in touching) >= 3


def test_synthetic_nuclei_each_instance_is_one_connected_blob_mostly():
    # every id labels pixels of one ellipse; allow rare splits where another nucleus cuts it
    _, _, instances = synthetic_nuclei(6, 96, seed=3)
    splits = total = 0
    for inst in instances:
        for i in range(1, inst.max() + 1):
            total += 1
            splits += ndi.label(inst == i)[1] != 1
    assert splits <= 0.15 * total


def test_synthetic_speed():
    """Chapters make hundreds of synthetic images: 100 of 128 x 128 px must cost under 2 s of
    CPU time (about 0.5 s on a 2-core EPYC). CPU time, not wall time: waiting behind other
    work on a busy machine does not count."""
    synthetic_membranes(2, 32, seed=0)            # warm-up (imports, caches)
    synthetic_nuclei(2, 32, seed=0)
    for make in (synthetic_membranes, synthetic_nuclei):
        start = time.process_time()
        out = make(100, 128, seed=0)
        seconds = time.process_time() - start
        print(f"{make.__name__}(100, 128): {seconds:.2f} s of CPU time")
        assert out[0].shape == (100, 128, 128)
        assert seconds < 2.0, f"{make.__name__} took {seconds:.2f} s of CPU for 100 images"


@pytest.mark.parametrize("make", [synthetic_membranes, synthetic_nuclei],
                         ids=["membranes", "nuclei"])
@pytest.mark.parametrize("kwargs", [dict(n=0), dict(n=-3), dict(n=2.0), dict(n="4"),
                                    dict(size=15), dict(size=0), dict(size=64.0),
                                    dict(size=None)])
def test_synthetic_bad_arguments(make, kwargs):
    with pytest.raises(ValueError, match="n must be|size must be"):
        make(**{"n": 2, "size": 32, **kwargs})


# ============================================================================ ISBI 2012: local


@pytest.fixture(scope="module")
def isbi_reference(isbi_data_dir):
    """The ISBI arrays loaded from the shared data, and the raw label PNGs."""
    images, masks = load_isbi2012(isbi_data_dir, download=False)
    base = isbi_data_dir / "isbi2012" / "train"
    raw_images = np.stack([np.asarray(Image.open(base / f"images/{i:02d}.png")) for i in ISBI_SLICES])
    raw_labels = np.stack([np.asarray(Image.open(base / f"labels/{i:02d}.png")) for i in ISBI_SLICES])
    return images, masks, raw_images, raw_labels


def test_isbi_loads_from_shared_data(isbi_reference):
    images, masks, raw_images, raw_labels = isbi_reference
    assert images.shape == masks.shape == (25, 512, 512)
    assert images.dtype == np.float32 and masks.dtype == np.int64
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.std() > 0.05                    # real content, not a constant
    np.testing.assert_allclose(images, raw_images / 255.0, atol=1e-6)
    # 1 = membrane = where the label PNG is 0 (dark); the labels are strictly 0/255
    assert set(np.unique(raw_labels)) == {0, 255}
    np.testing.assert_array_equal(masks, (raw_labels == 0).astype(np.int64))
    fraction = masks.mean()
    print(f"ISBI membrane fraction {fraction:.3f}")
    assert 0.17 <= fraction <= 0.25
    assert all(0.1 < masks[i].mean() < 0.35 for i in ISBI_SLICES)


def test_isbi_sha256_table_matches_sums_file(isbi_data_dir):
    sums = (isbi_data_dir / "isbi2012" / "SHA256SUMS").read_text().split("\n")
    table = {name: digest for digest, name in (line.split() for line in sums if line.strip())}
    assert table == ISBI_SHA256
    assert len(ISBI_SHA256) == 50
    assert list(ISBI_SLICES) == list(range(25))


def test_isbi_status_of_shared_data(isbi_data_dir):
    status = isbi2012_status(isbi_data_dir)
    assert len(status) == 50
    assert set(status.values()) == {"ok"}
    assert isbi2012_status(str(isbi_data_dir)) == status      # str root works too


def test_isbi_status_empty_dir(tmp_path):
    status = isbi2012_status(tmp_path)
    assert set(status) == set(ISBI_SHA256)
    assert set(status.values()) == {"missing"}


def _copy_isbi(src_root: Path, dst_root: Path) -> Path:
    src, dst = src_root / "isbi2012" / "train", dst_root / "isbi2012" / "train"
    for rel in ISBI_SHA256:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, dst / rel)
    return dst


def _flip_byte(path: Path, offset: int | None = None) -> bytes:
    raw = bytearray(path.read_bytes())
    i = len(raw) // 2 if offset is None else offset
    raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    return bytes(raw)


def _closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"        # nothing listens there any more


def test_isbi_corrupt_file_raises_and_is_not_overwritten(isbi_data_dir, tmp_path, isbi_server):
    base = _copy_isbi(isbi_data_dir, tmp_path)
    bad = base / "labels/07.png"
    corrupted = _flip_byte(bad)
    mtime = bad.stat().st_mtime_ns
    # even with a working download source, a corrupt file is never replaced
    with pytest.raises(DataError) as info:
        load_isbi2012(tmp_path, base_url=isbi_server.url)
    msg = str(info.value)
    assert "labels/07.png" in msg
    assert "Delete" in msg or "delete" in msg
    assert "SHA-256" in msg
    assert bad.read_bytes() == corrupted and bad.stat().st_mtime_ns == mtime
    assert isbi_server.requests == []
    status = isbi2012_status(tmp_path)
    assert status["labels/07.png"] == "corrupt"
    assert sum(v == "ok" for v in status.values()) == 49
    # after deleting it, the load downloads just that one file and succeeds
    bad.unlink()
    images, masks = load_isbi2012(tmp_path, base_url=isbi_server.url)
    assert isbi_server.requests == ["/label/7.png"]
    assert images.shape == (25, 512, 512)


def test_isbi_offline_message_says_where_to_put_files(tmp_path):
    with pytest.raises(DataError) as info:
        load_isbi2012(tmp_path, base_url=_closed_port_url())
    msg = str(info.value)
    base = tmp_path / "isbi2012" / "train"
    assert str(base) in msg
    assert "images/00.png" in msg and "labels/00.png" in msg
    assert "UNET_TEACH_DATA" in msg


def test_isbi_download_false_with_missing_files(tmp_path, isbi_data_dir):
    with pytest.raises(DataError, match="50 ISBI 2012 file\\(s\\) missing") as info:
        load_isbi2012(tmp_path, download=False)
    assert "download=True" in str(info.value) and "UNET_TEACH_DATA" in str(info.value)
    # one missing file is enough
    base = _copy_isbi(isbi_data_dir, tmp_path / "one")
    (base / "images/24.png").unlink()
    with pytest.raises(DataError, match="1 ISBI 2012 file\\(s\\) missing.*images/24.png"):
        load_isbi2012(tmp_path / "one", download=False)


def test_isbi_corrupt_and_missing_status(isbi_data_dir, tmp_path):
    base = _copy_isbi(isbi_data_dir, tmp_path)
    _flip_byte(base / "images/03.png", offset=100)
    (base / "labels/11.png").unlink()
    status = isbi2012_status(tmp_path)
    assert status["images/03.png"] == "corrupt"
    assert status["labels/11.png"] == "missing"
    assert sum(v == "ok" for v in status.values()) == 48


# ============================================================================ ISBI 2012: download


class _Server:
    """A local HTTP server laid out like the source repository (``image/N.png``, ``label/N.png``)."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        server_self = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):      # keep the test output clean
                pass

            def do_GET(self):
                server_self.requests.append(self.path)
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _remote_layout(src_root: Path, dst: Path) -> Path:
    src = src_root / "isbi2012" / "train"
    for folder in ("image", "label"):
        (dst / folder).mkdir(parents=True, exist_ok=True)
        for i in ISBI_SLICES:
            shutil.copyfile(src / f"{folder}s/{i:02d}.png", dst / folder / f"{i}.png")
    return dst


@pytest.fixture
def isbi_server(isbi_data_dir, tmp_path_factory):
    server = _Server(_remote_layout(isbi_data_dir, tmp_path_factory.mktemp("remote")))
    yield server
    server.close()


def test_remote_name_layout():
    assert data_mod._remote_name("images/07.png") == "image/7.png"
    assert data_mod._remote_name("labels/24.png") == "label/24.png"
    assert data_mod._remote_name("images/00.png") == "image/0.png"


def test_isbi_download_from_local_server(isbi_server, isbi_reference, tmp_path):
    images, masks = load_isbi2012(tmp_path / "cache", base_url=isbi_server.url)
    assert len(isbi_server.requests) == 50
    assert sorted(isbi_server.requests) == sorted(
        [f"/image/{i}.png" for i in ISBI_SLICES] + [f"/label/{i}.png" for i in ISBI_SLICES])
    np.testing.assert_array_equal(images, isbi_reference[0])
    np.testing.assert_array_equal(masks, isbi_reference[1])
    base = tmp_path / "cache" / "isbi2012" / "train"
    for rel, digest in ISBI_SHA256.items():
        assert hashlib.sha256((base / rel).read_bytes()).hexdigest() == digest
    assert set(isbi2012_status(tmp_path / "cache").values()) == {"ok"}
    # a second load uses the files on disk and downloads nothing
    isbi_server.requests.clear()
    again, _ = load_isbi2012(tmp_path / "cache", base_url=isbi_server.url + "/")
    assert isbi_server.requests == []
    np.testing.assert_array_equal(again, images)


def test_isbi_download_only_missing_files(isbi_server, isbi_data_dir, tmp_path):
    base = _copy_isbi(isbi_data_dir, tmp_path)
    (base / "images/12.png").unlink()
    (base / "labels/00.png").unlink()
    load_isbi2012(tmp_path, base_url=isbi_server.url)
    assert sorted(isbi_server.requests) == ["/image/12.png", "/label/0.png"]


def test_isbi_download_tampered_file(isbi_server, tmp_path):
    _flip_byte(isbi_server.root / "image" / "3.png")
    with pytest.raises(DataError, match="SHA-256") as info:
        load_isbi2012(tmp_path, base_url=isbi_server.url)
    assert "images/03.png" in str(info.value)
    base = tmp_path / "isbi2012" / "train"
    # the bad download is not left behind as if it were the real file
    assert not (base / "images/03.png").exists()
    status = isbi2012_status(tmp_path)
    assert status["images/03.png"] == "missing"
    assert "corrupt" not in status.values()


def test_isbi_download_http_404(isbi_server, tmp_path):
    (isbi_server.root / "label" / "5.png").unlink()
    with pytest.raises(DataError, match="labels/05.png") as info:
        load_isbi2012(tmp_path, base_url=isbi_server.url)
    assert "could not download" in str(info.value)


def test_isbi_url_env_var(isbi_server, tmp_path, monkeypatch):
    monkeypatch.setenv("UNET_TEACH_ISBI_URL", isbi_server.url)
    images, _ = load_isbi2012(tmp_path)
    assert images.shape == (25, 512, 512)
    assert len(isbi_server.requests) == 50


# ============================================================================ data directory


def test_unet_teach_data_env_is_honoured(monkeypatch, tmp_path, isbi_data_dir, isbi_reference):
    monkeypatch.setenv("UNET_TEACH_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    assert set(isbi2012_status().values()) == {"missing"}
    with pytest.raises(DataError, match=str(tmp_path)):
        load_isbi2012(download=False)
    monkeypatch.setenv("UNET_TEACH_DATA", str(isbi_data_dir))
    assert default_data_dir() == isbi_data_dir
    assert set(isbi2012_status().values()) == {"ok"}
    images, masks = load_isbi2012(download=False)
    np.testing.assert_array_equal(images, isbi_reference[0])
    np.testing.assert_array_equal(masks, isbi_reference[1])


def test_default_data_dir_without_env(monkeypatch):
    import pooch
    monkeypatch.delenv("UNET_TEACH_DATA", raising=False)
    assert default_data_dir() == Path(pooch.os_cache("unet-teach"))
    monkeypatch.setenv("UNET_TEACH_DATA", "~/somewhere")
    assert default_data_dir() == Path.home() / "somewhere"


@pytest.mark.parametrize("url", ["gopher://example.org/unet", "http://"])
def test_isbi_bad_url_is_not_reported_as_hash_mismatch(tmp_path, url):
    """A URL that cannot be fetched (unknown protocol, no host) is a download failure.

    pooch and requests raise ``ValueError`` subclasses for these; they must not be
    reported as "did not match its SHA-256" (nothing was downloaded to compare).
    """
    with pytest.raises(DataError) as info:
        load_isbi2012(tmp_path, base_url=url)
    msg = str(info.value)
    assert "SHA-256" not in msg, msg
    assert "could not download" in msg
    assert str(tmp_path / "isbi2012" / "train") in msg        # where to put the files instead


def _touching_brute_force(inst):
    out = inst.copy()
    h, w = inst.shape
    for y in range(h):
        for x in range(w):
            if inst[y, x] == 0:
                continue
            window = inst[max(0, y - 1):y + 2, max(0, x - 1):x + 2]
            if ((window != 0) & (window != inst[y, x])).any():
                out[y, x] = 0
    return out


def test_separate_touching_matches_a_pixel_by_pixel_rule():
    from unet_teach.data import separate_touching
    _, _, instances = synthetic_nuclei(3, 48, seed=5)
    got = separate_touching(instances)
    assert got.shape == instances.shape and got.dtype == instances.dtype
    for g, inst in zip(got, instances):
        np.testing.assert_array_equal(g, _touching_brute_force(inst))
    # after the gap no two cells share an 8-neighbourhood: every 8-connected component of
    # the foreground holds pixels of one cell only
    from scipy import ndimage
    for g in got:
        comps, n = ndimage.label(g > 0, structure=np.ones((3, 3)))
        for c in range(1, n + 1):
            assert len(np.unique(g[comps == c])) == 1
    with pytest.raises(ValueError, match="integer"):
        separate_touching(instances.astype(float))


# ============================================================================ dark texture

# synthetic_membranes(3, 64, seed=5) before the dark_texture keyword existed
MASKS_SHA256 = "e11e69127c333925545780f1e66f18959c63dfa9ef22aac7994b77f3e8d9dd38"
IMAGES_ROW10 = np.array([[0.5512865, 0.57446647, 0.4106424, 0.56777906, 0.55344355, 0.61295664],
                         [0.6497987, 0.6992441, 0.8268117, 0.70593035, 0.71959805, 0.7136664],
                         [0.70321476, 0.7938751, 0.8517664, 0.88579875, 0.7969571, 0.7546126]])
IMAGES_SUM = 6808.988256874261


def test_synthetic_membranes_default_is_unchanged_by_dark_texture():
    # the numbers above come from the earlier version of unet_teach/data.py: the other
    # chapters' data must not change
    images, masks = synthetic_membranes(3, 64, seed=5)
    assert hashlib.sha256(masks.tobytes()).hexdigest() == MASKS_SHA256
    np.testing.assert_allclose(images[:, 10, :6], IMAGES_ROW10, atol=1e-6)
    np.testing.assert_allclose(float(images.astype(np.float64).sum()), IMAGES_SUM, rtol=1e-9)
    again = synthetic_membranes(3, 64, seed=5, dark_texture=0.0)
    np.testing.assert_array_equal(again[0], images)


def test_dark_texture_adds_thin_dark_stripes_labelled_interior():
    plain, masks = synthetic_membranes(6, 96, seed=2)
    striped, striped_masks = synthetic_membranes(6, 96, seed=2, dark_texture=0.5)
    np.testing.assert_array_equal(striped_masks, masks)          # same cells, same labels
    darker = plain - striped > 0.25                               # where stripes were drawn
    assert 0.01 < darker.mean() < 0.2
    assert (masks[darker] == 0).all()                             # stripes are interior...
    away = np.stack([ndi.distance_transform_edt(m == 0) for m in masks])
    assert away[darker].min() >= 2                                # ... and off the membrane
    # nearly as dark as membrane (blur lightens a thin line), far darker than the interior
    membrane, interior = striped[masks == 1].mean(), striped[masks == 0].mean()
    assert striped[darker].mean() < membrane + 0.25 * (interior - membrane)
    # thin like a membrane: no stripe pixel lies more than 2 px from the stripe's edge
    assert max(ndi.distance_transform_edt(np.pad(d, 1)).max() for d in darker) <= 2
    # several parallel stripes per striped cell: more dark pieces than striped cells
    pieces = sum(ndi.label(d)[1] for d in darker)
    cells = sum(len(np.unique(ndi.label(m == 0)[0][d])) for m, d in zip(masks, darker))
    assert pieces > 2 * cells
    with pytest.raises(ValueError, match="dark_texture"):
        synthetic_membranes(2, 32, dark_texture=1.5)


def test_isbi_download_is_pinned_to_a_commit():
    """A branch can move; a commit cannot: the URL names the 40 hex digits of one."""
    import re

    from unet_teach.data import ISBI_BASE_URL, ISBI_COMMIT

    assert re.fullmatch(r"[0-9a-f]{40}", ISBI_COMMIT)
    assert f"/{ISBI_COMMIT}/" in ISBI_BASE_URL and "/master/" not in ISBI_BASE_URL
