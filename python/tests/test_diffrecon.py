"""The diffrecon Python package: shapes, dtypes, errors, the GIL, and bit-for-bit agreement with
the command line (`diffrecon reconstruct`)."""

import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import diffrecon

ROOT = Path(__file__).resolve().parents[2]


def cli_binary():
    """The CLI the bits are compared with: $DIFFRECON_BIN, else target/release/diffrecon."""
    if os.environ.get("DIFFRECON_BIN"):
        return Path(os.environ["DIFFRECON_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = target / "release" / "diffrecon"
    if not path.is_file():
        pytest.fail(f"no CLI at {path}: build it (cargo build --release) or set DIFFRECON_BIN")
    return path


def images(n=2, size=64):
    r, c = np.mgrid[0:size, 0:size].astype(np.float32)
    slices = [np.clip(np.sin(r * 0.11 + s) * np.cos(c * 0.07), -1, 1) for s in range(n)]
    return np.stack(slices)[:, None].astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return diffrecon.Model(device="cpu")


def test_simulate_keeps_rank_and_dtype():
    x = images(2)
    y = diffrecon.simulate(x, diffrecon.Blur(kind="motion", size=9, angle=20), seed=1)
    assert y.shape == (2, 1, 64, 64) and y.dtype == np.float32
    y2 = diffrecon.simulate(x[0, 0], noise_level=0.0)
    assert y2.shape == (64, 64) and y2.dtype == np.float32
    assert not np.array_equal(y[0, 0], x[0, 0])


def test_operator_shapes():
    x = images(1)
    ct = diffrecon.CT(views=30, arc=180, size=(64, 64))
    assert diffrecon.simulate(x, ct).shape == (1, 1, 30, 91)
    assert diffrecon.simulate(x, diffrecon.CT(views=20, size=(64, 64), detectors=70)).shape == (1, 1, 20, 70)
    assert diffrecon.simulate(x, diffrecon.Downsample(factor=2)).shape == (1, 1, 32, 32)
    y = diffrecon.simulate(x, diffrecon.Inpaint(keep=0.3, seed=0), noise_level=0.0)
    observed = np.count_nonzero(y) / y.size
    assert 0.25 < observed < 0.35
    mask = np.zeros((64, 64), np.float32)
    mask[:, :10] = 1
    y = diffrecon.simulate(x, diffrecon.Inpaint(mask=mask), noise_level=0.0)
    assert np.all(y[..., 10:] == 0) and np.array_equal(y[..., :10], x[..., :10])
    y = diffrecon.simulate(x, diffrecon.Inpaint(box=(8, 4, 16, 20)), noise_level=0.0)
    assert np.all(y[0, 0, 4:24, 8:24] == 0)


def test_float64_is_converted_to_float32():
    x = images(1)
    a = diffrecon.simulate(x, seed=3)
    b = diffrecon.simulate(x.astype(np.float64), seed=3)
    assert b.dtype == np.float32
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    # Non-contiguous views are read in logical order.
    wide = np.repeat(x, 2, axis=3)[..., ::2]
    assert np.array_equal(diffrecon.simulate(wide, seed=3), a)


def test_bad_input_raises_with_the_engines_message(model):
    x = images(1)
    with pytest.raises(TypeError, match="float32"):
        diffrecon.simulate(x.astype(np.int32))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(N, 1, H, W\)"):
        diffrecon.simulate(np.zeros((2, 3, 4), np.float32))
    bad = x.copy()
    bad[0, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        diffrecon.simulate(bad)
    with pytest.raises(ValueError, match="non-finite"):
        model.reconstruct(bad, steps=2)
    with pytest.raises(ValueError, match="unknown sampler 'ddpm'"):
        model.reconstruct(x, sampler="ddpm")
    with pytest.raises(ValueError, match="no parameter 'tau'"):
        model.reconstruct(x, steps=2, tau=0.5)
    with pytest.raises(ValueError, match="whole number"):
        model.reconstruct(x, t_start=2.5)
    with pytest.raises(ValueError, match="unknown skip"):
        model.reconstruct(x, skip="cubic")
    with pytest.raises(ValueError, match="deterministic"):
        model.reconstruct(x, sampler="diffpir", steps=2, samples=2)
    with pytest.raises(ValueError, match="CT geometry"):
        model.reconstruct(x, operator=diffrecon.CT(views=30, size=(32, 32)), steps=2)
    with pytest.raises(ValueError, match="odd"):
        diffrecon.Blur(size=8)
    with pytest.raises(ValueError, match="exactly one"):
        diffrecon.Inpaint(keep=0.5, box=(0, 0, 2, 2))
    with pytest.raises(ValueError, match="--keep"):
        diffrecon.Inpaint(keep=1.5)
    with pytest.raises(TypeError, match="operator must be"):
        diffrecon.simulate(x, operator="blur")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        diffrecon.Model(device="gpu")
    with pytest.raises(ValueError, match="nonexistent"):
        diffrecon.Model(path="/nonexistent/w.safetensors")


def test_reconstruct_shapes_and_info(model):
    x = images(2)
    y = diffrecon.simulate(x, seed=1)
    img, info = model.reconstruct(y, steps=3, seed=5, return_info=True)
    assert img.shape == (2, 1, 64, 64) and img.dtype == np.float32
    assert len(info["residual"]) == 2 and all(r < 1 for r in info["residual"])
    assert info["cg"]["solves"] == 3 and info["std"] is None
    single = model.reconstruct(y[0, 0], steps=3, seed=5)
    assert single.shape == (64, 64)
    # Slice 0 of the batch uses seed 5, as the single slice does.
    assert np.array_equal(single.view(np.uint32), img[0, 0].view(np.uint32))
    mean, info = model.reconstruct(y[:1], steps=2, samples=3, return_info=True)
    assert mean.shape == (1, 1, 64, 64) and info["std"].shape == (1, 1, 64, 64)
    assert info["std"].max() > 0
    ct = diffrecon.CT(views=30)
    fbp = model.reconstruct(diffrecon.simulate(x, ct), operator=ct, sampler="fbp")
    assert fbp.shape == (2, 1, 64, 64)
    tik = model.reconstruct(y, sampler="tikhonov", **{"lambda": 1e-2})
    assert not np.array_equal(tik, model.reconstruct(y, sampler="tikhonov"))


def test_the_gil_is_released_while_the_engine_runs(model):
    y = diffrecon.simulate(images(2), seed=1)
    count, stop = [0], threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        before = count[0]
        model.reconstruct(y, steps=3)
        during = count[0] - before
    finally:
        stop.set()
        t.join()
    assert during > 1000, f"the other thread ran {during} iterations during reconstruct"


@pytest.mark.parametrize("sampler,extra", [("diffpir-pnp", ["--steps", "3"]), ("tikhonov", [])])
def test_reconstruct_equals_the_cli_bit_for_bit(model, tmp_path, sampler, extra):
    y = diffrecon.simulate(images(2), seed=1)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "cli.npy"
    subprocess.run(
        [str(cli_binary()), "reconstruct", "--device", "cpu", "--measurement", str(tmp_path / "y.npy"),
         "--sampler", sampler, *extra, "--seed", "5", "--out", str(out)],
        check=True, capture_output=True)
    cli = np.load(out)
    ours = model.reconstruct(y, sampler=sampler, steps=3 if extra else None, seed=5)
    assert cli.dtype == np.float32 and cli.shape == ours.shape
    assert np.array_equal(cli.view(np.uint32), ours.view(np.uint32))
