"""What a CUDA step must not do, checked on the CPU through the meta device (tensors with shapes
and no data): no CPU tensors inside a compiled graph (inductor then skips CUDA graphs, and a CPU
result moved to the GPU is a synchronising copy), and no data-dependent shapes in the T5 band
gradient (on CUDA each is a sync: the host waits to learn the size)."""

import pytest
import torch

from model.fixed_step import FixedDecodeStep
from model.kv_cache import KVCache
from model.positional.t5_table_grad import band_table_grad
from tests.model_helpers import ENCODINGS, SCALINGS, tiny_model

CASES = [(e, "none") for e in ENCODINGS] + [("rope", s) for s in SCALINGS if s != "none"]


def cpu_tensors_in_graph(fn, *args) -> list[str]:
    """Compile `fn` as one graph (dynamo, no inductor) and name the nodes whose value is on the CPU."""
    found = []

    def backend(gm, example_inputs):
        for node in gm.graph.nodes:
            value = node.meta.get("example_value")
            if isinstance(value, torch.Tensor) and value.device.type == "cpu":
                found.append(f"{node.op} {node.target}")
        return gm.forward

    torch._dynamo.reset()
    torch.compile(fn, backend=backend, fullgraph=True)(*args)
    return found


@pytest.mark.parametrize("encoding,scaling", CASES)
def test_training_forward_and_decode_step_stay_on_the_device(encoding, scaling):
    model = tiny_model(encoding, scaling).to("meta")
    idx = torch.zeros(2, 8, dtype=torch.long, device="meta")
    assert cpu_tensors_in_graph(lambda x: model(x, x)[1], idx) == []
    step = FixedDecodeStep(model, KVCache.for_model(model, 2, 16))
    position = torch.zeros(1, dtype=torch.long, device="meta")
    with torch.inference_mode():
        assert cpu_tensors_in_graph(step._step, idx[:, :1], position) == []


@pytest.mark.parametrize("T", [40, 300])  # one block of queries, and several past the far bucket
def test_t5_band_gradient_has_no_data_dependent_shapes(T):
    B, H, D, buckets = 1, 2, 8, 32
    q, k, v, out, grad_out = (torch.empty(B, H, T, D, device="meta") for _ in range(5))
    grad = band_table_grad(q, k, v, out, grad_out, torch.empty(B, H, T, device="meta"),
                           torch.empty(buckets, H, device="meta"), max_distance=128)
    assert grad.shape == (buckets, H) and grad.device.type == "meta"
