"""Every model family and data source satisfies the engine's protocols, signatures included.

``runtime_checkable`` protocols check that each member is there, not how it is called; the
engine calls each method with the arguments its protocol names (positionally where the
protocol's are positional), so :func:`signature_problems` checks those with
``inspect.signature`` as well. A family or source added to factlab belongs in the lists below.
"""

from __future__ import annotations

import inspect
from typing import Protocol

import numpy as np
import pytest
import torch

from factlab.databases.recall_task import RecallTaskConfig, RecallTasks, answer_table
from factlab.models.attention_kernel import available
from factlab.models.attention_layer import AttentionLayerConfig, AttentionStack
from factlab.models.memories import LinearMemoryConfig, LinearMemoryStack, MLPMemoryConfig, MLPMemoryStack
from factlab.models.recall_transformer import (LinearAttentionConfig, LinearAttentionStack, RecallTransformerConfig,
                                               RecallTransformerStack)
from factlab.models.transformer import TransformerConfig, TransformerStack
from factlab.training.config import RunConfig, TrainConfig
from factlab.training.data import FixedData, LastTokenSampler, Sampler, StreamData
from factlab.training.engine import train
from factlab.training.interfaces import (Batch, CompiledStep, DataSource, HasChunkCost, HasCompiledStep,
                                         ModelStack)

P_KIND = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def members(protocol: type) -> list[str]:
    """The members a protocol asks for: its annotated attributes, methods and properties."""
    names = set(vars(protocol).get("__annotations__", {}))
    names |= {n for n in vars(protocol) if not n.startswith("_") or n == "__call__"}
    return sorted(names)


def signature_problems(obj, protocol: type) -> list[str]:
    """What stops the engine from calling ``obj`` as ``protocol`` says: a missing member, a
    method where a property is asked (or the reverse), a parameter the implementation does
    not take by the protocol's name and position, a protocol default without one in the
    implementation, or an extra parameter without a default."""
    problems = []
    for name in members(protocol):
        spec = inspect.getattr_static(protocol, name, None)
        if not hasattr(obj, name):
            problems.append(f"{name}: missing")
            continue
        if not callable(spec) or isinstance(spec, property):
            if inspect.ismethod(getattr(obj, name)):
                problems.append(f"{name}: a method, the protocol asks for a value")
            continue
        want = list(inspect.signature(spec).parameters.values())[1:]              # without self
        got = inspect.signature(obj if name == "__call__" else getattr(obj, name))  # bound: without self
        got_params = list(got.parameters.values())
        positional = [p for p in got_params if p.kind in P_KIND]
        var_pos = any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in got_params)
        var_kw = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in got_params)
        matched = set()
        for i, w in enumerate(want):
            if w.kind in P_KIND:
                g = positional[i] if i < len(positional) else None
                if g is None and not var_pos:
                    problems.append(f"{name}: takes no positional argument {i} ({w.name})")
                elif g is not None and g.name != w.name:
                    problems.append(f"{name}: argument {i} is {g.name!r}, the protocol's {w.name!r}")
            else:
                g = got.parameters.get(w.name)
                if g is None and not var_kw:
                    problems.append(f"{name}: no keyword argument {w.name!r}")
                elif g is not None and g.kind not in (inspect.Parameter.KEYWORD_ONLY,
                                                      inspect.Parameter.POSITIONAL_OR_KEYWORD):
                    problems.append(f"{name}: {w.name!r} cannot be passed by keyword")
            if g is not None:
                matched.add(g.name)
                if w.default is not inspect.Parameter.empty and g.default is inspect.Parameter.empty:
                    problems.append(f"{name}: {w.name!r} has a default in the protocol, none here")
        for g in got_params:
            if g.name not in matched and g.kind not in VARIADIC and g.default is inspect.Parameter.empty:
                problems.append(f"{name}: extra argument {g.name!r} without a default")
    return problems


# ---------------------------------------------------------------------------------- the families
def attention():
    return AttentionStack.init([AttentionLayerConfig(7, 3, 2, 2, 1), AttentionLayerConfig(5, 4, 1, 3, 2)])


def linear_memory():
    return LinearMemoryStack.init([LinearMemoryConfig(6, 4, 3), LinearMemoryConfig(9, 2, 5)])


def mlp_memory():
    return MLPMemoryStack.init([MLPMemoryConfig(6, 4, 3, 7), MLPMemoryConfig(9, 2, 5, 4)])


def recall_transformer():
    return RecallTransformerStack.init([RecallTransformerConfig(8, 5, 4, 2, 3, 6),
                                        RecallTransformerConfig(6, 7, 5, 1, 2, 3)])


def linear_attention():
    return LinearAttentionStack.init([LinearAttentionConfig(8, 5, seq_len=4), LinearAttentionConfig(6, 7, seq_len=4)])


def transformer():
    return TransformerStack.init([TransformerConfig(9, 5, 4, 2, 2, 2, 6), TransformerConfig(7, 6, 6, 1, 3, 1, 4,
                                                                                          norm="none")])


FAMILIES = {"attention": attention, "linear_memory": linear_memory, "mlp_memory": mlp_memory,
            "recall_transformer": recall_transformer, "linear_attention": linear_attention,
            "transformer": transformer}


def inputs_and_positions(stack) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``(M, B, C)`` valid inputs for each family's readout, and the positions it scores."""
    g = torch.Generator().manual_seed(0)
    M, B = stack.n_models, 5
    if isinstance(stack, (LinearMemoryStack, MLPMemoryStack)):
        n = torch.tensor([c.n_inputs for c in stack.configs])
        return (torch.rand(M, B, 1, generator=g) * n[:, None, None]).long(), (0,)
    C = 4
    vocab = torch.tensor([c.n_tokens for c in stack.configs])
    tokens = (torch.rand(M, B, C, generator=g) * vocab[:, None, None]).long()
    if isinstance(stack, (RecallTransformerStack, LinearAttentionStack)):
        tokens[:, :, -1] = torch.tensor([c.query for c in stack.configs])[:, None]
        return tokens, (C - 1,)
    return tokens, (1, 3)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_model_family_satisfies_the_model_stack_protocol(family):
    stack = FAMILIES[family]()
    assert isinstance(stack, ModelStack) and isinstance(stack, HasChunkCost)
    assert signature_problems(stack, ModelStack) == []
    assert signature_problems(stack, HasChunkCost) == []
    assert isinstance(stack.n_models, int) and isinstance(stack.partially_frozen, bool)
    assert isinstance(stack.device, torch.device) and isinstance(stack.dtype, torch.dtype)
    # the shapes the protocol promises, on a stack of two models of different sizes
    M = stack.n_models
    inputs, positions = inputs_and_positions(stack)
    features, W_out = stack.readout(stack.masked({}), inputs, positions)
    out = stack.output_mask()
    assert out.dtype == torch.bool and out.shape[0] == M
    assert features.shape[:3] == (M, inputs.shape[1], len(positions))
    assert W_out.shape == (M, features.shape[3], out.shape[1])
    assert stack.chunk_sizes().shape[0] == M
    assert stack.chunk_cost(stack.chunk_sizes()).shape == (M,)
    names = stack.trained_names()
    assert set(stack.update_masks()) == set(names) and names
    assert all(stack.update_masks()[n].shape == stack.params[n].shape for n in names)
    assert isinstance(stack.select([1]), type(stack)) and stack.select([1]).n_models == 1
    assert stack.take(torch.tensor([1, 0])).n_models == 2
    assert stack.to(dtype=torch.float64).dtype == torch.float64


def test_the_attention_layers_offer_a_compiled_step_that_satisfies_its_protocol():
    stack = attention()
    assert isinstance(stack, HasCompiledStep) and signature_problems(stack, HasCompiledStep) == []
    assert not any(isinstance(f(), HasCompiledStep) for n, f in FAMILIES.items() if n != "attention")
    step = stack.compiled_step("cpu")
    if step is None:
        pytest.skip("numba is not installed")
    assert isinstance(step, CompiledStep) and signature_problems(step, CompiledStep) == []


# ---------------------------------------------------------------------------------- the data sources
def fixed(held_out: bool = False) -> FixedData:
    seq = torch.randint(0, 5, (2, 6, 3), generator=torch.Generator().manual_seed(1))
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[1, 4:] = False
    other = FixedData(seq[..., :2], seq[..., 1:], valid, (0, 1)) if held_out else None
    return FixedData(seq[..., :2], seq[..., 1:], valid, (0, 1), held_out=other)


def stream() -> StreamData:
    tasks = [RecallTaskConfig(4, 2, 3, seq_len=6), RecallTaskConfig(5, 3, 2, seq_len=6)]
    sampler = LastTokenSampler(RecallTasks(tasks, [answer_table(t, seed=i) for i, t in enumerate(tasks)]))
    return StreamData(sampler, batch_size=8, eval_size=16)


SOURCES = {"fixed": fixed, "fixed_held_out": lambda: fixed(True), "stream": stream}


@pytest.mark.parametrize("source", SOURCES)
def test_every_data_source_satisfies_the_data_source_protocol(source):
    data = SOURCES[source]()
    assert isinstance(data, DataSource) and signature_problems(data, DataSource) == []
    assert isinstance(data.per_epoch, bool) and data.n_models == 2 and data.sizes().shape == (2,)
    assert isinstance(data.step(3, None), Batch) and isinstance(data.eval_batch(), Batch)
    if data.per_epoch:
        assert all(isinstance(b, Batch) for b in data.epoch(2, 4))
        assert (data.epoch(0, None)[0] is data.eval_batch()) == (source == "fixed")
    assert data.take(torch.tensor([1])).n_models == 1
    assert data.to("cpu", torch.float32).eval_batch().weight.dtype == torch.float32


def test_the_recall_sampler_satisfies_the_sampler_protocol():
    sampler = stream().sampler
    assert isinstance(sampler, Sampler) and signature_problems(sampler, Sampler) == []


# ---------------------------------------------------------------------------------- the check itself
def copy_without(obj, protocol: type, name: str | None):
    """A plain object holding every member ``protocol`` asks of ``obj`` but ``name``."""
    class Partial:
        pass
    out = Partial()
    for member in members(protocol):
        if member != name and member != "__call__":
            setattr(out, member, getattr(obj, member))
    return out


@pytest.mark.parametrize("protocol, make", [(ModelStack, attention), (DataSource, fixed)],
                         ids=["model", "data"])
def test_a_class_missing_one_member_fails_the_check(protocol, make):
    obj = make()
    assert isinstance(copy_without(obj, protocol, None), protocol)
    for name in members(protocol):
        partial = copy_without(obj, protocol, name)
        assert not isinstance(partial, protocol), name
        assert f"{name}: missing" in signature_problems(partial, protocol)


def test_a_method_with_another_signature_passes_isinstance_but_fails_the_signature_check():
    """The gap the signature check closes: ``epoch(self, epoch)`` has the name the protocol
    asks for, but the engine calls ``epoch(e, batch_size)``."""

    class OldSource(FixedData):
        def epoch(self, epoch):
            return super().epoch(epoch)

        def to(self, device, dtype, copy):
            return self

    data = fixed()
    old = OldSource(data.inputs, data.targets, data.valid, data.positions)
    assert isinstance(old, DataSource)
    assert signature_problems(old, DataSource) == [
        "epoch: takes no positional argument 1 (batch_size)",
        "to: 'dtype' has a default in the protocol, none here",
        "to: extra argument 'copy' without a default"]


class _Step(Protocol):
    def __call__(self, x: int, *, fast: bool) -> int: ...


def test_keyword_only_arguments_are_checked_by_name():
    def good(x, *, fast=False, extra=1):
        return x

    def positional_only(x, fast):
        return x

    def renamed(y, *, fast):
        return y

    assert signature_problems(good, _Step) == []
    assert signature_problems(positional_only, _Step) == []     # fast can be passed by keyword
    assert signature_problems(renamed, _Step) == ["__call__: argument 0 is 'y', the protocol's 'x'"]


# ---------------------------------------------------------------------------------- what the engine calls
class Spy:
    """Forwards every attribute to ``obj`` and records its name in ``log[role]``; what comes
    back from a method is spied on in turn when it plays a role (a sub-stack, a moved
    source, a compiled step)."""

    ROLES = {"select": "model", "take": None, "with_params": "model", "to": None, "compiled_step": "step"}

    def __init__(self, obj, role: str, log: dict[str, set]):
        self.__dict__.update(_obj=obj, _role=role, _log=log)

    def __getattr__(self, name):
        self._log[self._role].add(name)
        value = getattr(self._obj, name)
        if name not in self.ROLES or not callable(value):
            return value
        role = self.ROLES[name] or self._role

        def call(*args, **kwargs):
            out = value(*args, **kwargs)
            return out if out is None else (StepSpy if role == "step" else Spy)(out, role, self._log)
        return call


class StepSpy(Spy):
    def __call__(self, *args, **kwargs):
        self._log["step"].add("__call__")
        return self._obj(*args, **kwargs)


def test_the_protocols_name_exactly_what_the_engine_calls():
    """Three runs that between them take every branch the engine has (compiled step and
    autograd, a model that diverges and is compacted away, a partial freeze, minibatches,
    a monitor, a stream): the members the engine touches are those of the protocols."""
    log = {"model": set(), "data": set(), "step": set()}
    stack = attention()
    three = AttentionStack.init(list(stack.configs) + [stack.configs[0]], seed=1)
    broken = three.with_params({"W_U": three.params["W_U"].index_fill(0, torch.tensor([2]), float("nan"))})
    seq = torch.randint(0, 5, (3, 6, 3), generator=torch.Generator().manual_seed(1))
    data = FixedData(seq[..., :2], seq[..., 1:], torch.ones(3, 6, dtype=torch.bool), (0, 1))
    cfg = TrainConfig(max_epochs=4, eval_every=1)
    train(Spy(broken, "model", log), Spy(data, "data", log), cfg, RunConfig(kernel="auto"))
    mask = torch.zeros(broken.params["W_E"].shape, dtype=torch.bool)
    mask[:, :2] = True
    frozen = broken.freeze([], {"W_E": mask})
    train(Spy(frozen, "model", log), Spy(data, "data", log),
          TrainConfig(max_epochs=4, eval_every=1, batch_size=2, curve_every=2), RunConfig(kernel="autograd"),
          monitor=lambda st, ids: {"norm": st.params["W_U"].flatten(1).norm(dim=1)})
    tasks = stream().sampler.tasks.configs
    recall = RecallTransformerStack.init([RecallTransformerConfig(t.vocab_size, t.n_outputs, 4, 2, 2, 3) for t in tasks])
    train(Spy(recall, "model", log), Spy(stream(), "data", log), TrainConfig(max_steps=3, eval_every=1))
    model_members = set(members(ModelStack)) | set(members(HasChunkCost)) | set(members(HasCompiledStep))
    assert log["model"] == model_members
    assert log["data"] == set(members(DataSource))
    if available():
        assert log["step"] == set(members(CompiledStep))
