"""Input normalisation as part of the model (``nnaudit.networks.normalised``): exact, in the IR
(folded into the first layer where that is exact) and in the ONNX model onnxruntime checks against."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from nnaudit.errors import ConfigError
from nnaudit.networks import Normalisation, load, normalised
from nnaudit.networks.ops.elementwise import ElementwiseAffine
from nnaudit.networks.runtime import OnnxRuntimeModel, reference
from onnx_build import fold_normalisation, make_model, random_mlp, save

CIFAR = Path(__file__).resolve().parents[1] / "data" / "cifar10"
MEAN, STD = (0.485, 0.456, 0.406), (0.225,)


def cifar() -> tuple[Path, np.ndarray, np.ndarray]:
    data = np.load(CIFAR / "cifar10_test_3.npz")
    return CIFAR / "cifar_base_kw.onnx", data["x"], data["y"]


def test_cifar_prepended_model_is_exact_and_classifies_the_images() -> None:
    path, x, y = cifar()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    net = normalised(path, MEAN, STD)
    manual = OnnxRuntimeModel(path).run(Normalisation(MEAN, STD).apply(x).astype(np.float32))
    ours = reference(net).run(x)                   # the ONNX model with Sub/Div in front
    np.testing.assert_allclose(ours, manual, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net.evaluate(x).reshape(3, -1), manual, rtol=1e-5, atol=1e-5)
    assert (ours.argmax(1) == y).all() and (net.predict(x) == y).all()
    assert not (OnnxRuntimeModel(path).predict(x) == y).all()  # the pixels alone are misread
    assert net.check(samples=8).ok
    # the file is untouched; the result names it; the padded first Conv keeps the affine apart
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before == net.sha256 and net.source == path
    assert isinstance(net.layers[0], ElementwiseAffine) and len(net.layers) == len(load(path).layers) + 1


def test_offline_folded_copy_computes_the_same_logits() -> None:
    """The test's own fold (numpy/torch, into the padded Conv with a per-position bias) agrees
    with nnaudit's normalisation: the equivalence the CLI tests rely on."""
    path, x, _ = cifar()
    folded = fold_normalisation(onnx.load(str(path)), MEAN, STD * 3)
    manual = OnnxRuntimeModel(path).run(Normalisation(MEAN, STD).apply(x).astype(np.float32))
    np.testing.assert_allclose(OnnxRuntimeModel(folded.SerializeToString()).run(x), manual, rtol=1e-5, atol=1e-5)


def test_torch_module_of_a_normalised_network_matches() -> None:
    import torch

    path, x, _ = cifar()
    net = normalised(path, MEAN, STD)
    with torch.no_grad():
        got = net.to_torch()(torch.as_tensor(x)).numpy().reshape(3, -1)
    np.testing.assert_allclose(got, reference(net).run(x), rtol=1e-4, atol=1e-4)


def _conv_net(pads: int) -> onnx.ModelProto:
    rng = np.random.default_rng(pads)
    inits = {"W": rng.normal(0, 0.5, (4, 2, 3, 3)).astype(np.float32), "b": rng.normal(0, 0.1, 4).astype(np.float32),
             "V": rng.normal(0, 0.3, (3, 4 * (6 + 2 * pads - 2) ** 2)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "W", "b"], ["c"], pads=[pads] * 4, kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "V"], ["y"], transB=1)]
    return make_model(nodes, ("x", ["N", 2, 6, 6]), ("y", ["N", 3]), inits)


@pytest.mark.parametrize("pads, mean, folds", [(0, (0.5, -0.25), True), (1, (0.0,), True), (1, (0.5, -0.25), False)])
def test_fold_into_the_first_conv_only_where_exact(tmp_path: Path, pads: int, mean: tuple, folds: bool) -> None:
    """Folded into a Conv that does not pad, or with mean 0; a padded Conv with a mean keeps the affine."""
    path = save(_conv_net(pads), tmp_path / "conv.onnx")
    plain, net = load(path), normalised(path, mean, (0.5, 2.0))
    assert len(net.layers) == len(plain.layers) + (0 if folds else 1)
    x = np.random.default_rng(1).uniform(0, 1, (16, 2, 6, 6))
    want = plain.evaluate(Normalisation(mean, (0.5, 2.0)).apply(x))
    np.testing.assert_allclose(net.evaluate(x), want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(reference(net).run(x), want.reshape(16, -1), rtol=1e-5, atol=1e-5)


def test_channels_last_input_takes_the_values_along_its_last_axis(tmp_path: Path) -> None:
    """An NHWC input (a leading Transpose): two values fit its last axis, not its first (6)."""
    conv = _conv_net(0)
    nodes = [helper.make_node("Transpose", ["pixels"], ["x"], perm=[0, 3, 1, 2]), *conv.graph.node]
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in conv.graph.initializer}
    path = save(make_model(nodes, ("pixels", ["N", 6, 6, 2]), ("y", ["N", 3]), inits), tmp_path / "nhwc.onnx")
    net = normalised(path, (0.5, -0.25), (0.5, 2.0))
    x = np.random.default_rng(2).uniform(0, 1, (4, 6, 6, 2))
    manual = (x - np.array([0.5, -0.25])) / np.array([0.5, 2.0])  # along the last axis, by hand
    np.testing.assert_allclose(net.evaluate(x), load(path).evaluate(manual), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(reference(net).run(x), OnnxRuntimeModel(path).run(manual.astype(np.float32)),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match=r"has 6 channels \(its first axis\), or 2 along its last axis"):
        normalised(path, (0.1, 0.2, 0.3), 1.0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), n_in=st.integers(1, 6), per_feature=st.booleans(),
       gemm=st.booleans(), data=st.data())
def test_folded_dense_network_equals_normalise_then_run(tmp_path_factory: pytest.TempPathFactory, seed: int,
                                                        n_in: int, per_feature: bool, gemm: bool,
                                                        data: st.DataObject) -> None:
    """Property: a dense first layer absorbs the normalisation (no extra layer) and the network
    computes, in the IR and in onnxruntime, the logits of normalise-then-run on random inputs."""
    rng = np.random.default_rng(seed)
    path = save(random_mlp(rng, [n_in, 5, 3], gemm=gemm), tmp_path_factory.mktemp("mlp") / "m.onnx")
    k = n_in if per_feature else 1
    floats = st.floats(-2, 2, allow_nan=False)
    mean = data.draw(st.lists(floats, min_size=k, max_size=k))
    std = data.draw(st.lists(st.floats(0.05, 4), min_size=k, max_size=k))
    plain, net = load(path), normalised(path, mean, std)
    assert len(net.layers) == len(plain.layers)
    x = rng.uniform(-1, 2, (8, n_in))
    want = plain.evaluate(Normalisation(mean, std).apply(x))
    np.testing.assert_allclose(net.evaluate(x), want, rtol=1e-9, atol=1e-9)
    manual = OnnxRuntimeModel(path).run(Normalisation(mean, std).apply(x).astype(np.float32))
    scale = max(1.0, float(np.abs(manual).max()))
    np.testing.assert_allclose(reference(net).run(x.astype(np.float32)) / scale, manual / scale, atol=1e-5)


def test_load_takes_a_normalisation_and_checks_it() -> None:
    path, x, _ = cifar()
    net = load(path, normalisation=Normalisation(MEAN, STD), check=True)
    np.testing.assert_allclose(net.evaluate(x), normalised(path, MEAN, STD).evaluate(x))
    assert net.normalisation.to_dict() == {"mean": list(MEAN), "std": list(STD)}


@pytest.mark.parametrize("mean, std, message", [
    ((0.1, 0.2), (0.2,), "mean has 2 values but the model's input (3, 32, 32) has 3 channels"),
    ((0.1,), (0.2, 0.2, 0.2, 0.2), "std has 4 values"),
    ((0.1, 0.2, 0.3), (0.2, 0.2), "mean has 3 values and its std 2"),
    ((0.1,), (0.0,), "std: expected numbers > 0"),
    ((0.1,), (-1.0,), "std: expected numbers > 0"),
    ((float("nan"),), (1.0,), "mean: expected finite numbers"),
    ((0.1,), (float("inf"),), "std: expected finite numbers"),
    (("a",), (1.0,), "mean: expected a number or a non-empty list of numbers"),
    ((), (1.0,), "mean: expected a number or a non-empty list"),
])
def test_bad_normalisations_are_refused(mean: tuple, std: tuple, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        normalised(cifar()[0], mean, std)
    assert message in str(err.value)


def test_a_network_is_normalised_once_and_the_original_is_unchanged() -> None:
    path, x, _ = cifar()
    plain = load(path)
    before = plain.evaluate(x)
    net = normalised(plain, MEAN, STD)
    np.testing.assert_array_equal(plain.evaluate(x), before)
    assert plain.normalisation is None and plain.reference_onnx is None
    with pytest.raises(ConfigError, match="normalised already"):
        normalised(net, MEAN, STD)


@pytest.mark.parametrize("mean, std, message", [
    ("0.4,abc", None, "--mean: expected comma-separated numbers"),
    (None, "0.2,0", "--std: expected numbers > 0"),
    (None, "nan", "--std: expected finite numbers"),
    ("1,,2", None, "--mean: expected comma-separated numbers"),
])
def test_parse_names_the_option(mean: str | None, std: str | None, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Normalisation.parse(mean, std)
    assert message in str(err.value)


def test_parse_defaults() -> None:
    assert Normalisation.parse(None, None) is None
    assert Normalisation.parse("0.5", None) == Normalisation((0.5,), (1.0,))
    assert Normalisation.parse(None, "2,3") == Normalisation((0.0,), (2.0, 3.0))
