"""Regenerate the hostile-input corpus of issue #23 (``python tests/data/hostile/make_corpus.py``).

Writes, next to this script, one folder per input kind (``onnx/``, ``vnnlib/``, ``npz/``, ``toml/``,
``json/``), the valid companions each kind is run with (``base/``, and copies in ``toml/``), and
``manifest.json``: for every hostile file the exit codes it may end with and, for exit 2, a piece of
text the message must contain (the place: a node, a key, ``line:col``, a JSON path).  Deterministic:
the same bytes on every run.  tests/test_hostile.py drives every command over it; docs/reliability.md
says what it covers.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
N_IN, N_HID, N_OUT = 16, 4, 3  # a flat 4x4 "image" -> 4 -> 3 classes
REFUSED = [2]  # the usual expectation: a one-line error, exit 2


class Corpus:
    """Collects (file, bytes, allowed exit codes, place the exit-2 message names)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest: dict[str, dict] = {}

    def add(self, rel: str, data: bytes | str, expect: list[int] | None = None, where: str | None = None) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        self.manifest[rel] = {"expect": expect or REFUSED, "where": where}

    def companion(self, rel: str, data: bytes | str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)


# ---------------------------------------------------------------- ONNX

def weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"W1": rng.normal(0, 0.5, (N_HID, N_IN)).astype(np.float32), "b1": np.zeros(N_HID, np.float32),
            "W2": rng.normal(0, 0.5, (N_OUT, N_HID)).astype(np.float32), "b2": np.zeros(N_OUT, np.float32)}


def model(*, nodes: list | None = None, inits: dict | None = None, in_dims: list | None = None,
          in_type: int = TensorProto.FLOAT, opset: int = 13, extra_inits: list | None = None) -> onnx.ModelProto:
    """The base 16 -> 4 -> 3 Gemm/Relu net, with parts replaced."""
    nodes = nodes if nodes is not None else [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1, name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1, name="fc2")]
    tensors = [numpy_helper.from_array(v, k) for k, v in (weights() if inits is None else inits).items()]
    graph = helper.make_graph(nodes, "hostile", [helper.make_tensor_value_info("x", in_type, in_dims or [1, N_IN])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, N_OUT])],
                              tensors + list(extra_inits or []))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def raw_tensor(name: str, dims: list[int], data: bytes = b"", dtype: int = TensorProto.FLOAT) -> onnx.TensorProto:
    t = onnx.TensorProto(name=name, data_type=dtype)
    t.dims.extend(dims)
    t.raw_data = data
    return t


def ext_model(fields: dict[str, str], name: str = "W1") -> onnx.ModelProto:
    """The base net with W1 stored as external data described by ``fields``."""
    w = weights()
    m = model(inits={k: v for k, v in w.items() if k != name},
              extra_inits=[raw_tensor(name, list(w[name].shape))])
    t = m.graph.initializer[-1]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for key, value in fields.items():
        t.external_data.add(key=key, value=value)
    return m


def onnx_cases(c: Corpus) -> None:
    ser = lambda m: m.SerializeToString()  # noqa: E731
    base = ser(model())
    c.companion("base/model.onnx", base)
    c.add("onnx/valid_control.onnx", base, [0, 1, 3])
    w = weights()
    # duplicated attribute, odd attributes
    dup = model()
    dup.graph.node[0].attribute.extend([helper.make_attribute("transB", 0)])
    c.add("onnx/dup_attribute_transB.onnx", ser(dup), where="dup_attribute_transB.onnx")
    for attr, val in [("alpha", float("nan")), ("alpha", float("inf")), ("transA", 7), ("beta", 1e308)]:
        m = model()
        m.graph.node[0].attribute.extend([helper.make_attribute(attr, val)])
        c.add(f"onnx/attr_{attr}_{val}.onnx", ser(m), [1, 2], "fc1")
    # negative / zero / huge dims in initializers
    for i, dims in enumerate([[-1, 16], [4, -16], [0, 16], [4, 0], [10**12, 16], [2**62, 2**62], [4, 16, 1, 1, 1]]):
        inits = {k: v for k, v in w.items() if k != "W1"}
        data = w["W1"].tobytes() if i in (0, 1, 6) else b""
        c.add(f"onnx/init_dims_{i}.onnx", ser(model(inits=inits, extra_inits=[raw_tensor("W1", dims, data)])),
              where="W1" if i not in (2, 3, 6) else "fc1" if i in (2, 3) else None)
    bad_raw = {k: v for k, v in w.items() if k != "W1"}
    c.add("onnx/init_raw_short.onnx", ser(model(inits=bad_raw, extra_inits=[raw_tensor("W1", [4, 16], b"\0" * 7)])),
          where="W1")
    c.add("onnx/init_string_dtype.onnx",
          ser(model(inits=bad_raw, extra_inits=[raw_tensor("W1", [4, 16], b"", TensorProto.STRING)])), where="W1")
    c.add("onnx/init_undefined_dtype.onnx",
          ser(model(inits=bad_raw, extra_inits=[raw_tensor("W1", [4, 16], w["W1"].tobytes(), 0)])), where="W1")
    # opsets
    for opset in (999, 0, 1, 6, 2**40):
        c.add(f"onnx/opset_{opset}.onnx", ser(model(opset=opset)), [0, 1, 2, 3], "opset" if opset else None)
    # input types and dims
    for tname in ("STRING", "INT64", "BOOL", "DOUBLE", "FLOAT16", "UINT8", "COMPLEX64", "UNDEFINED"):
        c.add(f"onnx/input_{tname}.onnx", ser(model(in_type=getattr(TensorProto, tname))), [2],
              "input_" + tname)
    for i, dims in enumerate([[1, 10**12], [10**12, N_IN], [1, 2**31], [1, 2**63 - 1], [1, 10**4, 10**4, 10**4],
                              [1, 0], [0, N_IN], [1, 16] + [1] * 100, [1] * 1000 + [16], [], [1, 4, 4]]):
        c.add(f"onnx/input_dims_{i}.onnx", ser(model(in_dims=dims)), [0, 1, 2, 3], f"input_dims_{i}.onnx")
    # NaN / Inf weights
    for i, val in enumerate([np.nan, np.inf, -np.inf, np.float32(3e38)]):
        ws = dict(w)
        ws["W1"] = w["W1"].copy()
        ws["W1"][1, 2] = val
        ws["b2"] = (w["b2"] + val) if i == 2 else w["b2"]
        c.add(f"onnx/weights_nonfinite_{i}.onnx", ser(model(inits=ws)), [0, 1, 2, 3], "W1" if i < 3 else None)
    # external data
    ext = w["W1"].tobytes()
    c.companion("onnx/ext.bin", ext)
    for i, fields in enumerate([
        {"location": "ext.bin"}, {"location": "ext.bin", "offset": "abc"}, {"location": "ext.bin", "length": "1e3"},
        {"location": "ext.bin", "offset": "-10"}, {"location": "ext.bin", "length": str(10**15)},
        {"location": "ext\x00.bin"}, {"location": "../ext.bin"}, {"location": "/etc/passwd"},
        {"location": "../../../../../../etc/passwd"}, {"location": ""}, {}, {"location": "missing.bin"},
        {"location": "."}, {"location": "ext.bin", "offset": str(10**12)}, {"location": "ext.bin", "length": "-1"},
        {"location": "ext.bin", "length": "12"}, {"location": "ext.bin", "offset": "8"},
        {"location": "ext.bin", "offset": "1" * 5000}, {"location": "ext.bin", "checksum": "zz"},
        {"location": "ext.bin", "offset": "0x10"}, {"location": "ext.bin", "length": "256", "offset": "0"},
        {"location": "ext.bin", "basepath": "/"}, {"location": "x" * 5000},
    ]):
        ok = [0, 1, 3] if i in (0, 18, 20) else [0, 1, 2, 3] if i == 21 else REFUSED
        c.add(f"onnx/external_{i}.onnx", ser(ext_model(fields)), ok, None if i in (0, 18, 20, 21) else "W1")
    # truncated / garbage protobuf
    for cut in (1, 2, 5, 10, 20, 50, 100, 200, 400, len(base) // 2, len(base) - 3, len(base) - 1):
        c.add(f"onnx/truncated_{cut}.onnx", base[:cut], where=f"truncated_{cut}.onnx")
    rng = np.random.default_rng(1)
    for i in range(8):
        c.add(f"onnx/garbage_{i}.onnx", rng.integers(0, 256, 64 * (i + 1), dtype=np.uint8).tobytes(),
              where=f"garbage_{i}.onnx")
    for name, data in [("empty", b""), ("zeros", b"\0" * 256), ("text", "hello, not onnx\n"), ("json", "{}"),
                       ("zip", b"PK\x03\x04" + b"\0" * 40), ("flipped", bytes(b ^ 0xFF for b in base))]:
        c.add(f"onnx/garbage_{name}.onnx", data, where=f"garbage_{name}.onnx")
    graph_cases(c, w)


def graph_cases(c: Corpus, w: dict[str, np.ndarray]) -> None:
    ser = lambda m: m.SerializeToString()  # noqa: E731
    n = helper.make_node
    gemm1 = n("Gemm", ["x", "W1", "b1"], ["h"], transB=1, name="fc1")
    gemm2 = n("Gemm", ["r", "W2", "b2"], ["y"], transB=1, name="fc2")
    cases = {
        "cycle": [n("Gemm", ["r", "W1x", "b1"], ["h"], name="fc1"), n("Relu", ["h"], ["r"], name="relu"), gemm2],
        "self_loop": [gemm1, n("Relu", ["r"], ["r"], name="relu"), gemm2],
        "missing_initializer": [n("Gemm", ["x", "Wmissing", "b1"], ["h"], transB=1, name="fc1"),
                                n("Relu", ["h"], ["r"], name="relu"), gemm2],
        "unknown_op": [gemm1, n("FancyRelu", ["h"], ["r"], name="fancy"), gemm2],
        "custom_domain": [gemm1, n("Relu", ["h"], ["r"], name="relu", domain="com.evil"), gemm2],
        "no_nodes": [],
        "output_not_produced": [gemm1, n("Relu", ["h"], ["r"], name="relu")],
        "empty_output_name": [gemm1, n("Relu", ["h"], [""], name="relu"), gemm2],
        "duplicate_outputs": [gemm1, n("Relu", ["h"], ["h"], name="relu"), n("Gemm", ["h", "W2", "b2"], ["y"], transB=1)],
        "gemm_shape_mismatch": [n("Gemm", ["x", "W2", "b1"], ["h"], transB=1, name="fc1"),
                                n("Relu", ["h"], ["r"], name="relu"), gemm2],
        "node_no_inputs": [n("Relu", [], ["h"], name="relu0"), n("Relu", ["h"], ["r"]), gemm2],
        "flatten_axis_99": [n("Flatten", ["x"], ["f"], axis=99, name="flat"),
                            n("Gemm", ["f", "W1", "b1"], ["h"], transB=1), n("Relu", ["h"], ["r"]), gemm2],
        "transpose_bad_perm": [n("Transpose", ["x"], ["t"], perm=[5, 0], name="tr"), gemm1, n("Relu", ["h"], ["r"]), gemm2],
        "concat_bad_axis": [n("Concat", ["x", "x"], ["cc"], axis=7, name="cat"), gemm1, n("Relu", ["h"], ["r"]), gemm2],
        "maxpool_kernel_0": [n("Reshape", ["x", "s4"], ["img"], name="rs"),
                             n("MaxPool", ["img"], ["p"], kernel_shape=[0, 0], name="pool"), gemm1,
                             n("Relu", ["h"], ["r"]), gemm2],
        "conv_stride_0": [n("Reshape", ["x", "s4"], ["img"], name="rs"),
                          n("Conv", ["img", "K"], ["cv"], strides=[0, 0], name="conv"), gemm1,
                          n("Relu", ["h"], ["r"]), gemm2],
        "conv_kernel_too_big": [n("Reshape", ["x", "s4"], ["img"], name="rs"),
                                n("Conv", ["img", "K9"], ["cv"], name="conv"),
                                n("Flatten", ["cv"], ["f"]), n("Gemm", ["f", "W1", "b1"], ["h"], transB=1),
                                n("Relu", ["h"], ["r"]), gemm2],
        "pad_huge": [n("Pad", ["x", "pads"], ["pd"], name="pad"), n("Relu", ["pd"], ["r0"]),
                     gemm1, n("Relu", ["h"], ["r"]), gemm2],
        "reshape_huge": [n("Reshape", ["x", "shuge"], ["big"], name="rs"), gemm1, n("Relu", ["h"], ["r"]), gemm2],
        "reshape_two_minus_one": [n("Reshape", ["x", "sneg"], ["big"], name="rs"), gemm1, n("Relu", ["h"], ["r"]), gemm2],
        "constant_of_shape_huge": [n("ConstantOfShape", ["chuge"], ["zz"], name="cos"),
                                   n("Add", ["x", "zz"], ["xz"], name="add"),
                                   n("Gemm", ["xz", "W1", "b1"], ["h"], transB=1), n("Relu", ["h"], ["r"]), gemm2],
        "concat_doubling": [n("Concat", ["x", "x"], ["c0"], axis=1, name="cat0")]
        + [n("Concat", [f"c{i}", f"c{i}"], [f"c{i + 1}"], axis=1, name=f"cat{i + 1}") for i in range(40)]
        + [n("Gemm", ["c40", "W1", "b1"], ["h"], transB=1), n("Relu", ["h"], ["r"]), gemm2],
        "broadcast_blowup": [n("Reshape", ["x", "s1x1xN"], ["xr"], name="rs"), n("Add", ["xr", "col"], ["bb"], name="add"),
                             n("Add", ["bb", "row"], ["bc"], name="add2"), gemm1, n("Relu", ["h"], ["r"]), gemm2],
        "constant_no_value": [n("Constant", [], ["W1c"], name="const"), gemm1, n("Relu", ["h"], ["r"]), gemm2],
        "split_missing_output": [gemm1, n("Relu", ["h"], ["r", "extra"], name="relu"), gemm2],
    }
    extra = {"W1x": np.zeros((N_HID, N_HID), np.float32), "s4": np.array([1, 1, 4, 4], np.int64),
             "K": np.ones((1, 1, 2, 2), np.float32), "K9": np.ones((1, 1, 9, 9), np.float32),
             "pads": np.array([0, 0, 0, 10**11], np.int64), "shuge": np.array([10**12, -1], np.int64),
             "sneg": np.array([-1, -1], np.int64), "chuge": np.array([10**6, 10**6], np.int64),
             "s1x1xN": np.array([1, 1, N_IN], np.int64), "col": np.zeros((3000, 1, 1), np.float32),
             "row": np.zeros((1, 3000, 1), np.float32)}
    for name, nodes in cases.items():
        inits = dict(w)
        for k, v in extra.items():
            if any(k in node.input for node in nodes):
                inits[k] = v
        if name in ("cycle", "self_loop", "duplicate_outputs", "broadcast_blowup", "split_missing_output"):
            expect, where = [0, 1, 2, 3], None
        else:
            expect, where = REFUSED, f"{name}.onnx"
        c.add(f"onnx/graph_{name}.onnx", ser(model(nodes=nodes, inits=inits)), expect, where)
    two_out = model()
    two_out.graph.output.extend([helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, N_HID])])
    c.add("onnx/graph_two_outputs.onnx", ser(two_out), where="output")
    no_shape = model()
    no_shape.graph.input[0].type.tensor_type.ClearField("shape")
    c.add("onnx/input_no_shape.onnx", ser(no_shape), where="'x'")
    sym = model(in_dims=[1, "n"])
    c.add("onnx/input_symbolic_axis1.onnx", ser(sym), where="axis 1")


# ---------------------------------------------------------------- VNN-LIB

def box(lo: float = 0.4, hi: float = 0.6, n: int = N_IN) -> str:
    decl = "".join(f"(declare-const X_{i} Real)\n" for i in range(n))
    decl += "".join(f"(declare-const Y_{i} Real)\n" for i in range(N_OUT))
    return decl + "".join(f"(assert (>= X_{i} {lo}))\n(assert (<= X_{i} {hi}))\n" for i in range(n))


def vnnlib_cases(c: Corpus) -> None:
    valid = box() + "(assert (or (>= Y_1 Y_0) (>= Y_2 Y_0)))\n"
    c.companion("base/prop.vnnlib", valid)
    c.add("vnnlib/valid_control.vnnlib", valid, [0, 1, 3])
    b = box()
    deep = {
        "or_20000": "(assert " + "(or " * 20000 + "(>= Y_0 Y_1)" + ")" * 20000 + ")\n",
        "and_100000": "(assert " + "(and" * 100000 + "(>= Y_0 Y_1)" + ")" * 100000 + ")\n",
        "plus_50000": "(assert (>= Y_0 " + "(+ 1" * 50000 + " Y_1" + ")" * 50000 + "))\n",
        "minus_5000": "(assert (>= Y_0 " + "(- " * 5000 + "Y_1" + ")" * 5000 + "))\n",
        "times_3000": "(assert (>= Y_0 " + "(* 1 " * 3000 + "Y_1" + ")" * 3000 + "))\n",
        "parens_only_15000": "(" * 15000 + ")" * 15000 + "\n",
        "or_90": "(assert " + "(or " * 90 + "(>= Y_0 Y_1)" + ")" * 90 + ")\n",
    }
    for name, tail in deep.items():
        c.add(f"vnnlib/deep_{name}.vnnlib", b + tail, [0, 1, 3] if name == "or_90" else REFUSED,
              None if name == "or_90" else ":")
    big_index = [("X", "99999999999999999999"), ("Y", "99999999999999999999"), ("X", "9" * 5000),
                 ("X", "10000000"), ("Y", "123456789"), ("X", "-1"), ("X", "01"), ("X", "1e3")]
    for i, (kind, idx) in enumerate(big_index):
        c.add(f"vnnlib/index_{i}.vnnlib", b + f"(declare-const {kind}_{idx} Real)\n(assert (>= Y_0 Y_1))\n",
              where=":")
    for i, tail in enumerate(["(assert (>= Y_0 Y_1)", "(assert (>= Y_0 Y_1)))", ")", "(", "((((", "))))"]):
        c.add(f"vnnlib/unbalanced_{i}.vnnlib", b + tail + "\n", where=":")
    unknown = ["(assert (foo Y_0 Y_1))", "(assert (< Y_0 Y_1))", "(assert (distinct Y_0 Y_1))",
               "(declare-fun f () Real)", "(assert (>= Y_0 (/ Y_1 2)))", "(assert (>= Y_0 (* Y_1 Y_2)))",
               "(assert (>= Y_0 (ite true 1 2)))", "(assert (not (>= Y_0 Y_1)))", "(assert (=> (>= Y_0 Y_1) (>= Y_1 Y_0)))",
               "(assert (>= Y_0 X_0))", "(assert (>= Y_0 Y_99))", "(assert (>= Y_0 Z_0))", "(assert (>= (+ X_0 X_1) 0.5))",
               "(assert (and))", "(assert (or))", "(assert ())", "(assert)", "(assert (>= Y_0 Y_1) (>= Y_1 Y_0))",
               "(assert (>= Y_0))", "(assert (>= Y_0 Y_1 Y_2))", "(assert (>= () Y_1))", "(assert (>= (+) Y_1))",
               "(declare-const X_0 Real)", "(declare-const Y_3 Int)", "(declare-const W_0 Real)",
               "(declare-const X_16)", "(push 1)", "(assert true)", "(assert (>= Y_0 1/2))", "(assert (>= Y_0 0x10))"]
    for i, tail in enumerate(unknown):
        c.add(f"vnnlib/unknown_{i}.vnnlib", b + tail + "\n", where=":" if i not in (10,) else None)
    numbers = ["1e999", "-1e999", "nan", "NaN", "inf", "-inf", "1" * 5000, "1" * 400, "1e-400", "1.7976931348623157e309",
               "+.", "1.2.3", "--1", "1e", "e5"]
    for i, num in enumerate(numbers):
        ok = [0, 1, 3] if num in ("1e-400",) else REFUSED
        c.add(f"vnnlib/number_{i}.vnnlib", b + f"(assert (>= Y_0 {num}))\n", ok, None if ok != REFUSED else ":")
        c.add(f"vnnlib/number_box_{i}.vnnlib", box(hi=0.6).replace("(<= X_3 0.6)", f"(<= X_3 {num})")
              + "(assert (>= Y_0 Y_1))\n", REFUSED, None)
    encodings = {"latin1": ("(assert (>= Y_0 Y_1)) ; caf\xe9\n").encode("latin-1"),
                 "utf16": valid.encode("utf-16"), "nul": b"(assert (>= Y_0\x00 Y_1))\n", "ff": b"\xff\xfe\xfd\n",
                 "utf8_bom": "\ufeff(assert (>= Y_0 Y_1))\n".encode()}
    for name, tail in encodings.items():
        data = tail if name in ("utf16",) else b.encode() + tail
        c.add(f"vnnlib/encoding_{name}.vnnlib", data, where=f"encoding_{name}.vnnlib")
    boxes = {
        "lower_gt_upper": box(0.7, 0.3) + "(assert (>= Y_0 Y_1))\n",
        "one_unbounded": box().replace("(assert (<= X_5 0.6))\n", "") + "(assert (>= Y_0 Y_1))\n",
        "no_outputs": box().replace("(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n(declare-const Y_2 Real)\n", ""),
        "no_inputs": "".join(f"(declare-const Y_{i} Real)\n" for i in range(N_OUT)) + "(assert (>= Y_0 Y_1))\n",
        "no_assert": box().split("(assert")[0],
        "gap_in_inputs": box().replace("(declare-const X_7 Real)\n", ""),
        "declared_twice": b + "(declare-const X_3 Real)\n",
        "used_before_declared": "(assert (>= X_0 0))\n" + b,
        "too_many_inputs": box(n=17) + "(assert (>= Y_0 Y_1))\n",
        "too_few_inputs": box(n=15) + "(assert (>= Y_0 Y_1))\n",
        "mixing_xy": b + "(assert (>= (+ X_0 Y_0) 0))\n",
        "const_false": b + "(assert (>= 0 1))\n",
        "dnf_blowup": b + "(assert (and " + "(or (>= Y_0 Y_1) (>= Y_1 Y_0))" * 20 + "))\n",
        "empty": "", "comment_only": "; nothing here\n" * 10, "whitespace": " \n\t" * 100,
        "long_token": b + "(assert (>= Y_0 " + "a" * 30000 + "))\n",
        "long_comment": b + ";" + "x" * 30000 + "\n(assert (>= Y_0 Y_1))\n",
        "set_logic_only": "(set-logic QF_LRA)\n(check-sat)\n",
        "point_box": box(0.5, 0.5) + "(assert (>= Y_0 Y_1))\n",
        "wide_box": box(-1e300, 1e300) + "(assert (>= Y_0 Y_1))\n",
    }
    for name, text in boxes.items():
        ok = [0, 1, 3] if name in ("const_false", "long_comment", "point_box", "wide_box",
                                   "used_before_declared") else REFUSED
        c.add(f"vnnlib/spec_{name}.vnnlib", text, ok, None)


# ---------------------------------------------------------------- npz

def npy_bytes(arr: np.ndarray | None = None, header: str | None = None, body: bytes = b"", version: int = 1) -> bytes:
    """An .npy member: a real array, or a forged header with ``body`` as data."""
    if header is None:
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=True)
        return buf.getvalue()
    pad = 64 - (10 + len(header) + 1) % 64
    text = (header + " " * pad + "\n").encode("latin1")
    size = len(text).to_bytes(2 if version == 1 else 4, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + size + text + body


def npz_bytes(members: dict[str, bytes], compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        for name, data in members.items():  # a fixed date: the same bytes on every run
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            zf.writestr(info, data)
    return buf.getvalue()


def npz_cases(c: Corpus) -> None:
    rng = np.random.default_rng(2)
    x = rng.uniform(0.2, 0.8, (3, N_IN)).astype(np.float32)
    y = np.array([0, 1, 2], np.int64)
    xy = lambda xa, ya: npz_bytes({"x.npy": npy_bytes(xa), "y.npy": npy_bytes(ya)})  # noqa: E731
    valid = xy(x, y)
    c.companion("base/data.npz", valid)
    c.add("npz/valid_control.npz", valid, [0, 1, 3])
    f4 = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }"
    headers = {"shape_1e11x64": f4 % "(100000000000, 64)", "shape_1e6x1e6": f4 % "(1000000, 1000000)",
               "shape_negative": f4 % "(-3, 16)", "shape_huge_int": f4 % f"({10**30}, 16)",
               "shape_3x16_short": f4 % "(3, 16)", "descr_evil": "{'descr': __import__('os'), 'fortran_order': False, 'shape': (3, 16), }",
               "descr_unknown": "{'descr': '<q99', 'fortran_order': False, 'shape': (3, 16), }",
               "not_a_dict": "[1, 2, 3]", "missing_shape": "{'descr': '<f4', 'fortran_order': False, }",
               "fortran_order_str": "{'descr': '<f4', 'fortran_order': 'yes', 'shape': (3, 16), }",
               "shape_float": f4 % "(3.5, 16)", "garbage": "\x01\x02 not python"}
    for name, header in headers.items():
        c.add(f"npz/header_{name}.npz", npz_bytes({"x.npy": npy_bytes(header=header, body=b"\0" * 64),
                                                  "y.npy": npy_bytes(y)}), where="'x'")
    c.add("npz/header_1e11_deflated.npz", npz_bytes({"x.npy": npy_bytes(header=f4 % "(100000000000, 64)",
                                                                           body=b"\0" * 4096), "y.npy": npy_bytes(y)},
                                                    compress=True), where="'x'")
    c.add("npz/header_version_3.npz", npz_bytes({"x.npy": npy_bytes(header=f4 % "(3, 16)", body=x.tobytes(), version=3),
                                                 "y.npy": npy_bytes(y)}), [0, 1, 2, 3], None)
    c.add("npz/header_y_huge.npz", npz_bytes({"x.npy": npy_bytes(x), "y.npy": npy_bytes(
        header="{'descr': '<i8', 'fortran_order': False, 'shape': (10000000000000,), }")}), where="'y'")
    objs = np.empty(3, dtype=object)
    objs[:] = [1, "two", None]
    c.add("npz/pickled_x.npz", xy(objs, y), where="'x'")
    c.add("npz/pickled_y.npz", xy(x, objs), where="'y'")
    dtypes = {"complex": x.astype(np.complex64), "str": x.astype(str), "bool": x > 0.5, "datetime": np.zeros((3, N_IN), "M8[s]"),
              "void": np.zeros((3, N_IN), "V4"), "structured": np.zeros((3, N_IN), [("a", "<f4"), ("b", "<i4")]),
              "float16": x.astype(np.float16), "bigendian": x.astype(">f8"), "uint8_0_255": (x * 255).astype(np.uint8),
              "int_0_16": (x * 16).astype(np.int64)}
    for name, xa in dtypes.items():
        ok = [0, 1, 3] if name in ("float16", "bigendian", "bool") else REFUSED
        c.add(f"npz/dtype_x_{name}.npz", xy(xa, y), ok, None if ok != REFUSED else "'x'")
    for name, ya in {"float_nonint": np.array([0.5, 1, 2]), "negative": np.array([-1, 0, 1]), "huge": np.array([2**62, 0, 1]),
                     "out_of_range": np.array([0, 1, 99]), "2d": y.reshape(3, 1), "str": np.array(["a", "b", "c"]),
                     "nan": np.array([np.nan, 0, 1]), "short": y[:2], "empty": y[:0], "complex": y.astype(np.complex64)}.items():
        c.add(f"npz/y_{name}.npz", xy(x, ya), where="'y'")
    for name, xa in {"nan": np.where(np.eye(3, N_IN) > 0, np.nan, x), "inf": np.where(np.eye(3, N_IN) > 0, np.inf, x),
                     "above_clip": x * 2.5, "below_clip": x - 1.0, "float64_overflow": x.astype(np.float64) * 1e300,
                     "empty": x[:0], "scalar": np.float32(1.0), "wrong_size": x[:, :15], "rank4": x.reshape(3, 1, 4, 4),
                     "one_value": x[:, :1]}.items():
        ok = [0, 1, 3] if name == "rank4" else REFUSED
        c.add(f"npz/x_{name}.npz", xy(xa, y), ok, None if ok != REFUSED else "'x'" if name not in ("empty", "scalar") else None)
    c.add("npz/missing_x.npz", npz_bytes({"y.npy": npy_bytes(y)}), where="'x'")
    c.add("npz/missing_y.npz", npz_bytes({"x.npy": npy_bytes(x)}), where="'y'")
    c.add("npz/missing_both.npz", npz_bytes({"a.npy": npy_bytes(x)}), where="'x'")
    c.add("npz/empty_zip.npz", npz_bytes({}), where="'x'")
    c.add("npz/member_not_npy.npz", npz_bytes({"x.npy": b"hello", "y.npy": npy_bytes(y)}), where="'x'")
    c.add("npz/member_bad_magic_version.npz", npz_bytes({"x.npy": b"\x93NUMPY\x09\x00" + b"\0" * 60, "y.npy": npy_bytes(y)}),
          where="'x'")
    for cut in (2, 10, 30, 60, 100, 200, len(valid) // 2, len(valid) - 30, len(valid) - 1):
        c.add(f"npz/truncated_{cut}.npz", valid[:cut], where=f"truncated_{cut}.npz")
    comp = npz_bytes({"x.npy": npy_bytes(x), "y.npy": npy_bytes(y)}, compress=True)
    for cut in (40, len(comp) // 2):
        c.add(f"npz/truncated_deflated_{cut}.npz", comp[:cut], where=f"truncated_deflated_{cut}.npz")
    corrupt = bytearray(comp)
    corrupt[45:60] = b"\xff" * 15
    c.add("npz/corrupt_deflate.npz", bytes(corrupt), where="corrupt_deflate.npz")
    c.add("npz/single_npy.npz", npy_bytes(x), where="single_npy.npz")
    c.add("npz/garbage.npz", rng.integers(0, 256, 300, dtype=np.uint8).tobytes(), where="garbage.npz")
    c.add("npz/empty.npz", b"", where="empty.npz")
    c.add("npz/text.npz", "x,y\n1,2\n", where="text.npz")


# ---------------------------------------------------------------- nnaudit.toml

TOML_ATTACK = '''[[check]]
name = "a"
kind = "attack"
model = "model.onnx"
data = "data.npz"
limit = 2
attacks = ["fgsm"]
eps = [0.05]
min_robust_accuracy = 0.0
'''


def toml_cases(c: Corpus) -> None:
    c.companion("toml/model.onnx", (c.root / "base/model.onnx").read_bytes())
    c.companion("toml/data.npz", (c.root / "base/data.npz").read_bytes())
    c.companion("toml/prop.vnnlib", (c.root / "base/prop.vnnlib").read_bytes())
    c.add("toml/valid_attack.toml", TOML_ATTACK, [0, 1, 3])
    verify = '[[check]]\nname = "v"\nkind = "verify"\nmodel = "model.onnx"\nproperty = "prop.vnnlib"\ntimeout = 2\n'
    c.add("toml/valid_verify.toml", verify, [0, 1, 3])
    regions = ('[[check]]\nname = "r"\nkind = "regions"\nmodel = "model.onnx"\ndata = "data.npz"\nlimit = 1\n'
               'grid = [2, 2]\nstep = 0.05\nsteps = 1\ntimeout = 2\nmax_unsafe_regions = 0\n')
    c.add("toml/valid_regions.toml", regions, [0, 1, 3])
    subs = {
        "limit_str": ("limit = 2", 'limit = "abc"', "limit"), "limit_neg": ("limit = 2", "limit = -5", "limit"),
        "limit_huge": ("limit = 2", f"limit = {10**18}", None), "limit_float": ("limit = 2", "limit = 2.5", "limit"),
        "limit_bigint": ("limit = 2", f"limit = {10**30}", None), "eps_str": ("eps = [0.05]", 'eps = "x"', "eps"),
        "eps_neg": ("eps = [0.05]", "eps = [-1]", "eps"), "eps_nan": ("eps = [0.05]", "eps = [nan]", "eps"),
        "eps_inf": ("eps = [0.05]", "eps = [inf]", "eps"), "eps_empty": ("eps = [0.05]", "eps = []", "eps"),
        "eps_nested": ("eps = [0.05]", "eps = [[0.05]]", "eps"), "eps_huge": ("eps = [0.05]", "eps = [1e308]", None),
        "attacks_unknown": ('attacks = ["fgsm"]', 'attacks = ["rm -rf"]', "attacks"),
        "attacks_int": ('attacks = ["fgsm"]', "attacks = 5", "attacks"),
        "min_acc_2": ("min_robust_accuracy = 0.0", "min_robust_accuracy = 2", "min_robust_accuracy"),
        "min_acc_nan": ("min_robust_accuracy = 0.0", "min_robust_accuracy = nan", "min_robust_accuracy"),
        "unknown_key": ("limit = 2", "limit = 2\nlimmit = 3", "limmit"),
        "kind_unknown": ('kind = "attack"', 'kind = "explode"', "kind"),
        "kind_missing": ('kind = "attack"\n', "", "kind"), "name_missing": ('name = "a"\n', "", "name"),
        "name_int": ('name = "a"', "name = 1", "name"),
        "model_escape": ('model = "model.onnx"', 'model = "../../../../../etc/passwd"', "model"),
        "model_abs": ('model = "model.onnx"', 'model = "/etc/passwd"', "model"),
        "model_missing": ('model = "model.onnx"', 'model = "nope.onnx"', "model"),
        "model_dir": ('model = "model.onnx"', 'model = "."', "model"),
        "model_nul": ('model = "model.onnx"', 'model = "mo\\u0000del.onnx"', "model"),
        "data_escape": ('data = "data.npz"', 'data = "../npz/valid_control.npz"', "data"),
        "data_missing": ('data = "data.npz"', 'data = "nope.npz"', "data"),
        "data_int": ('data = "data.npz"', "data = 3", "data"),
        "options_bad": ('eps = [0.05]', 'eps = [0.05]\noptions = { fgsm = { steps = "abc" } }', None),
        "options_not_table": ('eps = [0.05]', 'eps = [0.05]\noptions = 5', "options"),
        "seed_neg": ("limit = 2", "limit = 2\nseed = -1", "seed"), "device_bad": ("limit = 2", 'limit = 2\ndevice = "tpu9"', None),
        "bounds_reversed": ("limit = 2", "limit = 2\nbounds = [1.0, 0.0]", "bounds"),
        "norm_bad": ("limit = 2", 'limit = 2\nnorm = "l7"', "norm"), "mean_bad": ("limit = 2", 'limit = 2\nmean = "x"', "mean"),
        "std_zero": ("limit = 2", "limit = 2\nstd = [0]", "std"),
        "check_as_table": ("[[check]]", "[check]", "check"), "duplicate_key": ("limit = 2", "limit = 2\nlimit = 3", "line 7"),
    }
    for name, (old, new, where) in subs.items():
        ok = [0, 1, 2, 3] if name in ("limit_huge", "eps_huge", "options_bad", "device_bad", "limit_bigint") else REFUSED
        c.add(f"toml/attack_{name}.toml", TOML_ATTACK.replace(old, new), ok, where)
    rsubs = {"steps_huge": ("steps = 1", f"steps = {10**9}"), "step_neg": ("step = 0.05", "step = -0.1"),
             "timeout_neg": ("timeout = 2", "timeout = -1"), "timeout_nan": ("timeout = 2", "timeout = nan"),
             "timeout_huge": ("timeout = 2", "timeout = 1e308"), "grid_zero": ("grid = [2, 2]", "grid = [0, 0]"),
             "grid_huge": ("grid = [2, 2]", f"grid = [{10**9}, {10**9}]"), "max_unsafe_neg": ("max_unsafe_regions = 0", "max_unsafe_regions = -1"),
             "method_bad": ("limit = 1", 'limit = 1\nmethod = "magic"')}
    for name, (old, new) in rsubs.items():
        refused = name not in ("timeout_huge", "steps_huge")   # the message names the key: "key 'grid'"
        c.add(f"toml/regions_{name}.toml", regions.replace(old, new), REFUSED if refused else [0, 1, 3],
              f"key '{'max_unsafe_regions' if name == 'max_unsafe_neg' else name.rsplit('_', 1)[0]}'" if refused else None)
    vsubs = {"prop_escape": ('"prop.vnnlib"', '"../../../../../../etc/passwd"'), "prop_abs": ('"prop.vnnlib"', '"/etc/passwd"'),
             "prop_list_bad": ('"prop.vnnlib"', '["prop.vnnlib", 3]'), "prop_empty": ('"prop.vnnlib"', "[]"),
             "prop_hostile": ('"prop.vnnlib"', '"data.npz"'), "expect_bad": ("timeout = 2", 'timeout = 2\nexpect = "maybe"'),
             "timeout_zero": ("timeout = 2", "timeout = 0")}
    for name, (old, new) in vsubs.items():
        c.add(f"toml/verify_{name}.toml", verify.replace(old, new), REFUSED, f"key '{name.split('_')[0].replace('prop', 'property')}'")
    whole = {"empty": "", "syntax": "[[check]\nname = ", "non_utf8": b"name = \"\xff\xfe\"\n", "check_int": "check = 5",
             "check_list_of_int": "check = [1, 2]", "defaults_bad": '[defaults]\ntimeout = "x"\n' + TOML_ATTACK,
             "defaults_unknown": "[defaults]\nwhatever = 1\n" + TOML_ATTACK, "duplicate_names": TOML_ATTACK * 2,
             "deep_array": "a = " + "[" * 5000 + "]" * 5000 + "\n", "deep_table": "a = " + "{b = " * 3000 + "1" + "}" * 3000,
             "huge_string": 'x = "' + "y" * 20000 + '"\n' + TOML_ATTACK, "allow_outside_str": 'allow_outside_paths = "yes"\n' + TOML_ATTACK,
             "nul": "name = 1\x00\n", "bom": "\ufeff" + TOML_ATTACK, "tool_table_only": "[tool.other]\na = 1\n"}
    for name, text in whole.items():
        c.add(f"toml/file_{name}.toml", text, [0, 1, 2, 3] if name == "bom" else REFUSED, f"file_{name}.toml")


# ---------------------------------------------------------------- result JSON

def result_doc() -> dict:
    return {"schema": "nnaudit-result", "version": 1, "kind": "attack", "command": "nnaudit attack m.onnx",
            "model": None, "settings": {}, "seeds": {}, "started": None, "finished": None, "complete": True,
            "num_samples": 2, "clean_accuracy": 1.0, "norm": "linf", "eps": [0.1], "attacks": ["pgd"],
            "results": [{"eps": 0.1, "robust_accuracy": {"pgd": 0.5, "worst": 0.5}}], "examples": []}


def json_cases(c: Corpus) -> None:
    doc = result_doc()
    text = json.dumps(doc)
    c.add("json/valid_control.json", text, [0])
    c.add("json/deep_list_100000.json", "[" * 100000 + "]" * 100000, where="deep_list_100000.json")
    c.add("json/deep_dict_10000.json", '{"a":' * 10000 + "1" + "}" * 10000, where="deep_dict_10000.json")
    c.add("json/deep_in_settings.json", text.replace('"settings": {}', '"settings": ' + "[" * 10000 + "]" * 10000),
          where="deep_in_settings.json")
    c.add("json/deep_in_settings_500.json", text.replace('"settings": {}', '"settings": ' + "[" * 500 + "]" * 500), [0, 2])
    mutate = {
        "nan_robust": ('"pgd": 0.5', '"pgd": NaN', "robust_accuracy"), "inf_robust": ('"pgd": 0.5', '"pgd": Infinity', "robust_accuracy"),
        "neg_inf_clean": ('"clean_accuracy": 1.0', '"clean_accuracy": -Infinity', "clean_accuracy"),
        "nan_eps": ('"eps": 0.1', '"eps": NaN', "eps"), "e999": ('"pgd": 0.5', '"pgd": 1e999', "robust_accuracy"),
        "bigint": ('"num_samples": 2', '"num_samples": ' + "9" * 5000, "deep"),
        "version_2": ('"version": 1', '"version": 2', "version"), "version_str": ('"version": 1', '"version": "1"', "version"),
        "version_null": ('"version": 1', '"version": null', "version"), "version_float": ('"version": 1', '"version": 1.5', "version"),
        "schema_other": ('"nnaudit-result"', '"other"', "schema"), "kind_bad": ('"kind": "attack"', '"kind": "boom"', "kind"),
        "kind_giant": ('"kind": "attack"', '"kind": "' + "k" * 20000 + '"', "kind"),
        "version_giant": ('"version": 1', '"version": "' + "v" * 20000 + '"', "version"),
        "command_giant": ('"nnaudit attack m.onnx"', '"' + "c" * 20000 + '"', None),
        "results_str": ('"results": [', '"results": "x", "r": [', "results"), "eps_str": ('"eps": 0.1', '"eps": "x"', "eps"),
        "complete_str": ('"complete": true', '"complete": "yes"', "complete"), "missing_results": ('"results": [', '"r": [', "results"),
        "robust_list": ('{"pgd": 0.5, "worst": 0.5}', "[0.5]", "robust_accuracy"),
        "examples_shape": ('"examples": []', '"examples": [{"eps": 0.1, "attack": "pgd", "label": 0, "pred_clean": 0, '
                           '"pred_adv": 1, "shape": [1000000000, 1000000000], "x": [], "x_adv": []}]', "shape"),
        "examples_neg_shape": ('"examples": []', '"examples": [{"eps": 0.1, "attack": "pgd", "label": 0, "pred_clean": 0, '
                               '"pred_adv": 1, "shape": [-1, 4], "x": [1, 2, 3, 4], "x_adv": [1, 2, 3, 4]}]', "shape"),
        "html_in_names": ('"attacks": ["pgd"]', '"attacks": ["<script>alert(1)</script>"]', None),
    }
    for name, (old, new, where) in mutate.items():
        ok = [0] if name in ("command_giant", "html_in_names") else REFUSED
        c.add(f"json/field_{name}.json", text.replace(old, new, 1), ok, where if where != "deep" else None)
    for cut in (1, 10, 50, 100, len(text) // 2, len(text) - 1):
        c.add(f"json/truncated_{cut}.json", text[:cut], where=f"truncated_{cut}.json")
    for name, data in {"empty": b"", "array": b"[1, 2]", "null": b"null", "string": b'"x"', "non_utf8": b'{"a": "\xff"}',
                       "nul": b"{\x00}", "bom": "\ufeff".encode() + text.encode(), "utf16": text.encode("utf-16"),
                       "duplicate_keys": text.replace('"version": 1', '"version": 1, "version": 9').encode(),
                       "trailing": (text + "garbage").encode(), "two_docs": (text + text).encode()}.items():
        ok = [0, 2] if name in ("bom",) else REFUSED
        c.add(f"json/file_{name}.json", data, ok, f"file_{name}.json")
    for kind in ("verify", "regions", "adapt", "check"):
        shell = dict(doc, kind=kind)
        c.add(f"json/kind_{kind}_wrong_body.json", json.dumps(shell), where="$")


def main(root: Path = HERE) -> int:
    """Write the corpus and its manifest under ``root``; returns the number of hostile files."""
    for sub in ("base", "onnx", "vnnlib", "npz", "toml", "json"):
        shutil.rmtree(root / sub, ignore_errors=True)
    c = Corpus(root)
    for make in (onnx_cases, vnnlib_cases, npz_cases, toml_cases, json_cases):
        make(c)
    (root / "manifest.json").write_text(json.dumps(c.manifest, indent=0, sort_keys=True) + "\n")
    return len(c.manifest)


if __name__ == "__main__":
    print(f"{main()} hostile inputs written under {HERE}", file=sys.stderr)
