import numpy as np
import pytest

from kit.errors import ConfigError, IntegrityError
from kit.quantize import export_onnx
from kit.runtime import RUNTIMES, OnnxRuntime, Runtime, TorchRuntime, get_runtime


@pytest.fixture(scope="module")
def graph(bc_bundle) -> bytes:
    return export_onnx(bc_bundle)[0]


@pytest.fixture(scope="module")
def x(bc_result) -> np.ndarray:
    return np.ascontiguousarray(bc_result.bundle.transform(bc_result.splits.test.X))


def test_runtimes_are_registered_by_name():
    assert {"torch": TorchRuntime, "onnxruntime": OnnxRuntime} == RUNTIMES


def test_torch_and_onnx_runtimes_agree_on_the_exported_graph(bc_bundle, graph, x):
    torch_rt = get_runtime("torch", bc_bundle, threads=1)
    onnx_rt = OnnxRuntime(bc_bundle, model=graph)
    out = onnx_rt.run(x)
    assert out.dtype == np.float32 and out.shape == (len(x), bc_bundle.spec["n_out"])
    np.testing.assert_allclose(out, torch_rt.run(x), rtol=1e-4, atol=1e-5)
    # the batch axis is dynamic: one row and many rows both run
    assert onnx_rt.run(x[:1]).shape == (1, 2) and onnx_rt.run(np.repeat(x, 3, axis=0)).shape == (3 * len(x), 2)


def test_onnx_runtime_serving_defaults_and_thread_options(bc_bundle, graph):
    default = OnnxRuntime(bc_bundle, model=graph)
    opts = default.session.get_session_options()
    assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1
    many = OnnxRuntime(bc_bundle, model=graph, threads=2)
    assert many.session.get_session_options().intra_op_num_threads == 2
    with pytest.raises(ConfigError, match="threads"):
        OnnxRuntime(bc_bundle, model=graph, threads=-1)


def test_set_runtime_by_name_uses_a_bundle_artifact(bc_bundle, graph, x):
    bundle = bc_bundle.copy()
    bundle.artifacts["g.onnx"] = graph
    bundle.set_runtime("onnxruntime", artifact="g.onnx")
    assert isinstance(bundle.runtime, Runtime) and bundle.runtime.name == "onnxruntime"
    np.testing.assert_allclose(bundle.predict_proba(bc_bundle.example(2)),
                               bc_bundle.predict_proba(bc_bundle.example(2)), atol=1e-6)


def test_onnx_runtime_refuses_missing_or_broken_artifacts(bc_bundle):
    with pytest.raises(ConfigError, match="needs an ONNX artifact"):
        get_runtime("onnxruntime", bc_bundle)
    with pytest.raises(IntegrityError, match="'nope.onnx' is not in the bundle"):
        get_runtime("onnxruntime", bc_bundle, artifact="nope.onnx")
    with pytest.raises(IntegrityError, match="cannot be loaded"):
        OnnxRuntime(bc_bundle, model=b"not an onnx graph")
    with pytest.raises(ConfigError, match="unknown runtime 'tvm'"):
        get_runtime("tvm", bc_bundle)


def test_cuda_device_is_used_only_when_available(bc_bundle, graph):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert OnnxRuntime(bc_bundle, model=graph, device="cuda").session.get_providers()[0] == "CUDAExecutionProvider"
    else:
        with pytest.raises(ConfigError, match="no CUDAExecutionProvider"):
            OnnxRuntime(bc_bundle, model=graph, device="cuda")
    # auto falls back to the CPU when there is no CUDA provider
    assert "CPUExecutionProvider" in OnnxRuntime(bc_bundle, model=graph, device="auto").session.get_providers()


@pytest.fixture(scope="module")
def int8_dynamic(bc_bundle):
    from kit.quantize import attach

    return attach(bc_bundle, "ort-int8-dynamic")


def test_batch_invariance_is_known_per_graph(bc_bundle, graph, int8_dynamic):
    assert OnnxRuntime(bc_bundle, model=graph).batch_invariant
    assert get_runtime("torch", bc_bundle).batch_invariant
    # dynamic int8 quantizes activations with ranges taken from the whole batch
    assert not int8_dynamic.runtime.batch_invariant


def test_groups_run_alone_on_a_batch_dependent_runtime(int8_dynamic, bc_result):
    rows = bc_result.splits.test.X.to_dict("records")
    sizes = [1, 5, 0, 20, len(rows) - 26]
    grouped = int8_dynamic.infer(rows, groups=sizes).probabilities
    alone, start = [], 0
    for n in sizes:
        if n:
            alone.append(int8_dynamic.infer(rows[start:start + n]).probabilities)
        start += n
    # every group gets exactly what it gets on its own, whatever shares the call
    np.testing.assert_array_equal(grouped, np.vstack(alone))
    merged = int8_dynamic.infer(rows).probabilities
    assert np.abs(merged - grouped).max() > 0  # without groups the rows move with their neighbours
    with pytest.raises(ConfigError, match="do not add up"):
        int8_dynamic.infer(rows, groups=[1, 2])


def test_groups_are_one_call_on_a_batch_invariant_runtime(bc_bundle, graph, x):
    calls = []
    rt = OnnxRuntime(bc_bundle, model=graph)
    original = rt.run
    rt.run = lambda batch: calls.append(len(batch)) or original(batch)  # type: ignore[method-assign]
    out = rt.run_groups(x, [3, len(x) - 3])
    assert calls == [len(x)]
    np.testing.assert_array_equal(out, original(x))
