"""A pretend accelerator on the CPU, to catch device slips in CI, which has no GPU.

Code under test is given the device `VIRTUAL` ("privateuseone", a device torch knows by name but
nothing here implements) where a chapter would say "cuda". Inside `virtual_device()`, a
TorchFunctionMode runs every op on the CPU, while it keeps track of which tensors and generators
were put on VIRTUAL, and rejects what CUDA rejects:
- an op whose tensors are on both devices (a 0-dim CPU tensor, a scalar, is allowed, as on CUDA;
  so are CPU index tensors in indexing and cross-device copies);
- a sampling op whose generator is on the other device than its tensors;
- .numpy() of a tensor on the device.
A tensor is on VIRTUAL when it was made there (`device=VIRTUAL`, `.to(VIRTUAL)`, `module.to(VIRTUAL)`)
or computed from one that is; `.device` then reads VIRTUAL, so `torch.zeros(..., device=x.device)`
follows it as it would follow a GPU tensor. Numbers are exactly the CPU's.
"""
from __future__ import annotations

import weakref
from contextlib import contextmanager

import torch
import torch.utils._pytree as pytree
from torch.overrides import TorchFunctionMode

VIRTUAL = torch.device("privateuseone")
CPU = torch.device("cpu")
_DEVICE_PROPERTY = torch.Tensor.device
_DATA_PROPERTY = torch.Tensor.data


class DeviceSlip(RuntimeError):
    """What CUDA would have refused."""


def _is_virtual_device(value) -> bool:
    if isinstance(value, str):
        return value.split(":")[0] == VIRTUAL.type
    return isinstance(value, torch.device) and value.type == VIRTUAL.type


_CONVERSIONS = {torch.Tensor.to, torch.Tensor.cpu, torch.Tensor.type_as}
_INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.copy_,
             torch.Tensor.index_put, torch.Tensor.index_put_, torch.index_put}
_LIKE = {torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like, torch.rand_like,
         torch.randn_like, torch.randint_like}


class _Guard(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self._tensors: dict[int, weakref.ref] = {}
        self.generators: dict[int, weakref.ref] = {}

    # ------------------------------------------------------------------ bookkeeping
    def on_device(self, tensor: torch.Tensor) -> bool:
        ref = self._tensors.get(id(tensor))
        return ref is not None and ref() is tensor

    def _put(self, tensor: torch.Tensor) -> None:
        key = id(tensor)
        self._tensors[key] = weakref.ref(tensor, lambda _, key=key: self._tensors.pop(key, None))

    def _set(self, tensor: torch.Tensor, on_device: bool) -> None:
        if on_device:
            self._put(tensor)
        else:
            self._tensors.pop(id(tensor), None)

    def _generator_on_device(self, g) -> bool:
        ref = self.generators.get(id(g))
        return ref is not None and ref() is g

    # ------------------------------------------------------------------ the mode
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__qualname__", getattr(func, "__name__", str(func)))
        if func is torch.device:  # naming the device is not using it
            return func(*args, **kwargs)
        owner = getattr(func, "__self__", None)
        if owner is _DEVICE_PROPERTY:
            return VIRTUAL if self.on_device(args[0]) else func(*args)
        if owner is _DATA_PROPERTY and func.__name__ == "__set__":  # x.data = y: x is now where y is
            func(*args)
            self._set(args[0], self.on_device(args[1]))
            return None
        if name.endswith("_has_compatible_shallow_copy_type"):  # a type check, no data
            return func(*args, **kwargs)
        if func is torch.Tensor.__deepcopy__:  # a copy stays where its original is (memo holds both)
            result = func(*args, **kwargs)
            self._set(result, self.on_device(args[0]))
            return result
        leaves, _ = pytree.tree_flatten((args, kwargs))
        wants_device = any(_is_virtual_device(v) for v in leaves)
        if wants_device:  # run on the CPU what was asked of the device
            args, kwargs = pytree.tree_map(lambda v: CPU if _is_virtual_device(v) else v, (args, kwargs))
        if name.endswith("_parse_to"):  # nn.Module.to: keep the device it was asked for
            device, *rest = func(*args, **kwargs)
            return (VIRTUAL if wants_device else device, *rest)

        tensors = [v for v in leaves if isinstance(v, torch.Tensor)]
        self._check(func, name, args, kwargs, tensors, wants_device)
        result = func(*args, **kwargs)
        if not isinstance(result, torch.Tensor):  # tuples and lists of tensors (topk, _foreach_*) follow their inputs
            if wants_device or any(self.on_device(t) for t in tensors):
                for leaf in pytree.tree_leaves(result):
                    if isinstance(leaf, torch.Tensor):
                        self._put(leaf)
            return result
        if func in _CONVERSIONS or func in _LIKE:
            target = self._conversion_target(func, args, kwargs, wants_device)
            if result is args[0] and target != self.on_device(result):
                result = result.view_as(result)  # a CPU .to() returns its input: give the copy its own identity
            if target:
                self._put(result)
            return result
        if wants_device or any(self.on_device(t) for t in tensors):
            self._put(result)
        return result

    def _conversion_target(self, func, args, kwargs, wants_device) -> bool:
        """Whether .to()/.cpu()/*_like/.type_as puts its result on the device."""
        if func is torch.Tensor.cpu:
            return False
        if wants_device:
            return True
        explicit = kwargs.get("device")
        if func is torch.Tensor.to:
            other = [a for a in args[1:] if isinstance(a, torch.Tensor)]
            if other:
                return self.on_device(other[0])
            if explicit is not None or any(isinstance(a, (str, torch.device)) for a in args[1:]):
                return False  # an explicit device that is not VIRTUAL: the CPU
        if func is torch.Tensor.type_as:
            return self.on_device(args[1])
        if func in _LIKE and explicit is not None:
            return False
        return self.on_device(args[0])

    def _check(self, func, name, args, kwargs, tensors, wants_device: bool) -> None:
        if func is torch.Tensor.numpy and self.on_device(args[0]):
            raise DeviceSlip("numpy() of a tensor on the device: a GPU tensor needs .cpu() first")
        generator = kwargs.get("generator")
        if isinstance(generator, torch.Generator):
            drawn_on = self._generator_on_device(generator)
            data_on = any(self.on_device(t) for t in tensors) if tensors else wants_device
            if drawn_on != data_on:
                raise DeviceSlip(f"{name}: a generator on the {'device' if drawn_on else 'CPU'} draws for tensors on "
                                 f"the {'device' if data_on else 'CPU'} (CUDA refuses this)")
        if func in _CONVERSIONS or func in _LIKE or func is torch.Tensor.numpy:
            return
        if func in _INDEXING:
            # A tensor on the device takes CPU indices and copies from the CPU; a CPU tensor takes no
            # device indices, and a device value only through a plain slice (a copy); index_put's values
            # must be where the tensor is.
            if func is torch.Tensor.__setitem__ and not self.on_device(args[0]):
                index = [t for t in pytree.tree_leaves(args[1]) if isinstance(t, torch.Tensor)]
                tensors = [args[0], *index] + ([args[2]] if index and isinstance(args[2], torch.Tensor) else [])
            elif self.on_device(args[0]) or func is torch.Tensor.copy_:
                if func not in (torch.Tensor.index_put, torch.Tensor.index_put_, torch.index_put):
                    return
                values = args[2] if len(args) > 2 else kwargs.get("values")
                tensors = [args[0], values]
        sides = {self.on_device(t) for t in tensors if t.dim() > 0}
        if len(sides) == 2:
            where = [f"{tuple(t.shape)} on {'the device' if self.on_device(t) else 'the CPU'}" for t in tensors]
            shapes = ", ".join(where[:6]) + (f" and {len(where) - 6} more" if len(where) > 6 else "")
            raise DeviceSlip(f"{name} mixes devices: {shapes}")


class _VirtualGenerator(torch.Generator):
    """torch.Generator(device=VIRTUAL): a CPU generator the guard counts as on the device."""
    guard: _Guard | None = None

    def __new__(cls, device="cpu"):
        on = _is_virtual_device(device)
        g = super().__new__(cls, device=CPU if on else device)
        if on and cls.guard is not None:
            cls.guard.generators[id(g)] = weakref.ref(g)
        return g

    def __init__(self, device="cpu"):
        pass

    @property
    def device(self) -> torch.device:
        guard = type(self).guard
        return VIRTUAL if guard is not None and guard._generator_on_device(self) else super().device


@contextmanager
def virtual_device():
    """Within: VIRTUAL acts as an accelerator whose slips raise DeviceSlip. Yields the guard, whose
    on_device(tensor) says where a tensor is."""
    guard = _Guard()
    original_generator, original_new = torch.Generator, torch.nn.Parameter.__dict__["__new__"]

    def new_parameter(cls, data=None, requires_grad=True):  # made without a torch function: tag it here
        parameter = original_new.__func__(cls, data, requires_grad)
        if data is not None and guard.on_device(data):
            guard._put(parameter)
        return parameter

    _VirtualGenerator.guard = guard
    torch.Generator = _VirtualGenerator
    torch.nn.Parameter.__new__ = staticmethod(new_parameter)
    try:
        with guard:
            yield guard
    finally:
        torch.Generator = original_generator
        torch.nn.Parameter.__new__ = original_new
        _VirtualGenerator.guard = None
