"""A restricted reader for torch's ``.pth`` zip files that never executes pickled code.

A ``torch.save`` file is a zip archive: ``<root>/data.pkl`` (a pickle of the saved object)
and ``<root>/data/<key>`` (the raw bytes of each storage, little-endian). The pickle names
tensors through ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``,
with each storage given by a persistent id ``('storage', torch.FloatStorage, key, location,
numel)``.

Training checkpoints (LAVIS, Video-LLaMA) also pickle objects we do not want: an
``argparse.Namespace`` or OmegaConf config, optimizer state, a grad scaler, numpy scalars.
``torch.load(weights_only=True)`` refuses the whole file for them. This module interprets the
pickle opcodes itself (``pickletools.genops`` parses them; nothing is handed to
``pickle.Unpickler``) and:

* rebuilds tensors (``_rebuild_tensor``/``_v2``, parameters, ``_rebuild_from_type_v2`` of a
  plain tensor/parameter) as ``TensorRef`` records, after checking sizes and strides fit their
  storage; their bytes are read only when asked for (``TensorRef.materialize``);
* rebuilds plain containers (dict, ``OrderedDict``, list, tuple, set) and scalars;
* turns EVERY other global into a ``Skipped`` placeholder: it is never imported, never called;
  calling or constructing it yields a ``SkippedObject`` and its state is dropped. The names of
  all placeholders are recorded (``Unpickled.skipped_globals``).

Anything the interpreter does not understand raises ``PickleRefused`` with the reason.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# torch.<Name>Storage → dtype name (torch/storage.py's typed storages).
STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64",
    "UntypedStorage": "uint8",
}
ITEM_SIZES = {
    "float64": 8,
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
    "complex128": 16,
    "complex64": 8,
}
MAX_DIMS = 64
MAX_PICKLE_BYTES = 256 << 20  # the pickle of a state dict is kilobytes; its data is elsewhere


class PickleRefused(Exception):
    """The pickle cannot be read safely (malformed, or a construct we do not interpret)."""


@dataclass(frozen=True)
class Skipped:
    """A global the file names (``module.name``); never imported."""

    name: str


@dataclass(eq=False)
class SkippedObject:
    """What calling/constructing a ``Skipped`` global would have produced: nothing."""

    name: str


@dataclass(frozen=True)
class _Marker:
    """A global we interpret ourselves (a rebuild function, OrderedDict, a tensor type)."""

    name: str


@dataclass(frozen=True)
class StorageRef:
    key: str
    dtype: str
    numel: int


@dataclass(eq=False)
class TensorRef:
    """A tensor described by the pickle; ``materialize`` reads its bytes from the archive."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    archive: _Archive = field(repr=False)

    def materialize(self) -> torch.Tensor:
        import torch

        flat = self.archive.storage(self.storage)  # (numel,) of the storage's dtype
        if not self.size:
            return flat[self.offset].clone()
        return torch.as_strided(flat, self.size, self.stride, self.offset)


_TENSOR_TYPES = {"torch.Tensor", "torch._tensor.Tensor", "torch.nn.parameter.Parameter"}
_MARKERS = {
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._tensor._rebuild_from_type_v2",
    "torch.Size",
    *_TENSOR_TYPES,
}


def is_tensor_rebuild(name: str) -> bool:
    """A torch global that would rebuild a tensor in a form this reader does not support."""
    return name.startswith("torch") and ("_rebuild" in name or name.endswith("Storage"))


class _Archive:
    """The storages of one zip file, read on demand (each once)."""

    def __init__(self, zf: zipfile.ZipFile, root: str) -> None:
        self.zf, self.root = zf, root
        self._cache: dict[str, Any] = {}

    def storage(self, ref: StorageRef) -> torch.Tensor:
        import torch

        if ref.key in self._cache:
            flat = self._cache[ref.key]
        else:
            name = f"{self.root}/data/{ref.key}"
            try:
                info = self.zf.getinfo(name)
            except KeyError:
                raise PickleRefused(f"storage {ref.key} is missing from the archive") from None
            nbytes = ref.numel * ITEM_SIZES[ref.dtype]
            if info.file_size < nbytes:
                raise PickleRefused(
                    f"storage {ref.key} holds {info.file_size} bytes, {nbytes} are needed"
                )
            raw = torch.empty(nbytes, dtype=torch.uint8)
            with self.zf.open(info) as fh:
                got = fh.readinto(memoryview(raw.numpy())) if nbytes else 0
            if got != nbytes:
                raise PickleRefused(f"storage {ref.key} is truncated")
            flat = (
                raw.view(getattr(torch, ref.dtype)) if nbytes else raw.to(getattr(torch, ref.dtype))
            )
            self._cache[ref.key] = flat
        if flat.numel() != ref.numel:
            raise PickleRefused(f"storage {ref.key} is used with two different sizes")
        return flat


@dataclass
class Unpickled:
    root: Any
    skipped_globals: list[str]  # every placeholder's global name, in first-seen order


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or len(value) > MAX_DIMS:
        raise PickleRefused(f"tensor {what} is not a tuple of at most {MAX_DIMS} ints")
    if not all(type(v) is int and v >= 0 for v in value):
        raise PickleRefused(f"tensor {what} must hold non-negative ints")
    return value


def _rebuild_tensor(archive: _Archive, storage: Any, offset: Any, size: Any, stride: Any) -> Any:
    if isinstance(storage, SkippedObject):  # a storage type we do not read
        return SkippedObject(storage.name)
    if not isinstance(storage, StorageRef):
        raise PickleRefused("a tensor's storage is not a storage record")
    if type(offset) is not int or offset < 0:
        raise PickleRefused("a tensor's storage offset is not a non-negative int")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise PickleRefused("a tensor's size and stride differ in length")
    if all(size):
        last = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True))
        if last >= storage.numel:
            raise PickleRefused(
                f"a tensor of size {list(size)} reaches element {last} of a storage of "
                f"{storage.numel}"
            )
    return TensorRef(storage, offset, size, stride, archive)


class _Machine:
    """The pickle virtual machine restricted to data (see module docstring)."""

    def __init__(self, archive: _Archive) -> None:
        self.archive = archive
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.skipped: dict[str, None] = {}

    # ---------------------------------------------------------------- helpers
    def pop(self) -> Any:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise PickleRefused("stack underflow")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise PickleRefused("no mark on the stack")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def top(self) -> Any:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise PickleRefused("stack underflow")
        return self.stack[-1]

    def find_global(self, module: Any, name: Any) -> Any:
        if not isinstance(module, str) or not isinstance(name, str):
            raise PickleRefused("a global's module and name must be strings")
        full = f"{module}.{name}"
        if full in _MARKERS:
            return _Marker(full)
        if module == "torch" and name in STORAGE_DTYPES:
            return _Marker(f"storage:{STORAGE_DTYPES[name]}")
        self.skipped.setdefault(full, None)
        return Skipped(full)

    def persistent_load(self, pid: Any) -> StorageRef | SkippedObject:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
            raise PickleRefused(f"unknown persistent id {str(pid)[:80]}")
        _, kind, key, _location, numel = pid
        if isinstance(kind, Skipped):  # e.g. torch.QInt8Storage: refused if a tensor needs it
            return SkippedObject(kind.name)
        if not (isinstance(kind, _Marker) and kind.name.startswith("storage:")):
            raise PickleRefused(f"storage of unsupported type {type(kind).__name__}")
        if isinstance(key, bytes):
            key = key.decode("ascii", "replace")
        if not isinstance(key, str) or not key.isalnum() or type(numel) is not int or numel < 0:
            raise PickleRefused("malformed storage record")
        return StorageRef(key, kind.name.removeprefix("storage:"), numel)

    def call(self, func: Any, args: Any) -> Any:
        if not isinstance(args, tuple):
            raise PickleRefused("call arguments are not a tuple")
        if isinstance(func, Skipped):
            return SkippedObject(func.name)
        if not isinstance(func, _Marker):
            raise PickleRefused(f"cannot call a {type(func).__name__}")
        name = func.name
        if name == "collections.OrderedDict":
            if args == ():
                return OrderedDict()
            if not _pairs(args):
                raise PickleRefused(f"{name} called with unexpected arguments")
            return OrderedDict((_key(k), v) for k, v in args[0])
        if name in ("torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2"):
            if len(args) < 4:
                raise PickleRefused(f"{name} needs at least 4 arguments")
            return _rebuild_tensor(self.archive, *args[:4])
        if name in (
            "torch._utils._rebuild_parameter",
            "torch._utils._rebuild_parameter_with_state",
        ):
            if args and isinstance(args[0], SkippedObject):
                return args[0]
            if not args or not isinstance(args[0], TensorRef):
                raise PickleRefused(f"{name} of something that is not a tensor")
            return args[0]
        if name == "torch._tensor._rebuild_from_type_v2":
            if len(args) != 4:
                raise PickleRefused(f"{name} needs 4 arguments")
            inner, new_type, inner_args, _state = args
            if not (isinstance(new_type, _Marker) and new_type.name in _TENSOR_TYPES):
                what = new_type.name if isinstance(new_type, Skipped | _Marker) else "?"
                raise PickleRefused(f"tensor of unsupported type {what}")
            return self.call(inner, inner_args)
        if name == "torch.Size":
            if len(args) != 1 or not isinstance(args[0], tuple):
                raise PickleRefused("torch.Size of something that is not a tuple")
            return _int_tuple(args[0], "size")
        raise PickleRefused(f"{name} cannot be called here")

    def build(self, obj: Any, state: Any) -> None:
        # State of a placeholder, a dict's attributes (a state_dict's _metadata) or a tensor's
        # Python attributes: dropped. Anything else has no business being built.
        if not isinstance(obj, SkippedObject | dict | TensorRef):
            raise PickleRefused(f"cannot set the state of a {type(obj).__name__}")

    # ---------------------------------------------------------------- the loop
    def run(self, data: bytes) -> Any:
        try:
            for opcode, arg, _pos in pickletools.genops(io.BytesIO(data)):
                result = self.step(opcode.name, arg)
                if result is not _CONTINUE:
                    return result
        except PickleRefused:
            raise
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, UnicodeError) as err:
            raise PickleRefused(f"malformed pickle: {type(err).__name__}: {err}") from None
        raise PickleRefused("the pickle has no STOP")

    def step(self, op: str, arg: Any) -> Any:  # one branch per opcode
        push = self.stack.append
        if op in ("PROTO", "FRAME"):
            pass
        elif op == "STOP":
            if len(self.stack) != 1 or self.marks:
                raise PickleRefused("the pickle ends with a malformed stack")
            return self.stack.pop()
        elif op == "MARK":
            self.marks.append(len(self.stack))
        elif op == "POP":
            if self.stack and (not self.marks or len(self.stack) > self.marks[-1]):
                self.stack.pop()
            else:
                self.pop_mark()
        elif op == "POP_MARK":
            self.pop_mark()
        elif op == "DUP":
            push(self.top())
        elif op in _SCALAR_OPS:
            push(arg)
        elif op == "NONE":
            push(None)
        elif op in ("NEWTRUE", "NEWFALSE"):
            push(op == "NEWTRUE")
        elif op == "EMPTY_LIST":
            push([])
        elif op == "EMPTY_DICT":
            push({})
        elif op == "EMPTY_TUPLE":
            push(())
        elif op == "EMPTY_SET":
            push(set())
        elif op == "LIST":
            push(self.pop_mark())
        elif op == "TUPLE":
            push(tuple(self.pop_mark()))
        elif op in ("TUPLE1", "TUPLE2", "TUPLE3"):
            count = int(op[-1])
            items = [self.pop() for _ in range(count)][::-1]
            push(tuple(items))
        elif op == "DICT":
            items = self.pop_mark()
            if len(items) % 2:
                raise PickleRefused("DICT with an odd number of items")
            push({_key(k): v for k, v in zip(items[::2], items[1::2], strict=True)})
        elif op == "FROZENSET":
            push(frozenset(_key(k) for k in self.pop_mark()))
        elif op == "APPEND":
            value = self.pop()
            _as(self.top(), list).append(value)
        elif op == "APPENDS":
            items = self.pop_mark()
            _as(self.top(), list).extend(items)
        elif op == "SETITEM":
            value, key = self.pop(), self.pop()
            _as(self.top(), dict)[_key(key)] = value
        elif op == "SETITEMS":
            items = self.pop_mark()
            if len(items) % 2:
                raise PickleRefused("SETITEMS with an odd number of items")
            target = _as(self.top(), dict)
            for key, value in zip(items[::2], items[1::2], strict=True):
                target[_key(key)] = value
        elif op == "ADDITEMS":
            items = self.pop_mark()
            _as(self.top(), set).update(_key(k) for k in items)
        elif op in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.memo[int(arg)] = self.top()
        elif op == "MEMOIZE":
            self.memo[len(self.memo)] = self.top()
        elif op in ("GET", "BINGET", "LONG_BINGET"):
            if int(arg) not in self.memo:
                raise PickleRefused(f"memo entry {arg} is not defined")
            push(self.memo[int(arg)])
        elif op == "GLOBAL":
            module, _, name = str(arg).partition(" ")
            push(self.find_global(module, name))
        elif op == "STACK_GLOBAL":
            name, module = self.pop(), self.pop()
            push(self.find_global(module, name))
        elif op == "INST":
            module, _, name = str(arg).partition(" ")
            args = tuple(self.pop_mark())
            push(self.construct(self.find_global(module, name), args))
        elif op == "OBJ":
            items = self.pop_mark()
            if not items:
                raise PickleRefused("OBJ without a class")
            push(self.construct(items[0], tuple(items[1:])))
        elif op == "REDUCE":
            args = self.pop()
            func = self.pop()
            push(self.call(func, args))
        elif op == "NEWOBJ":
            args = self.pop()
            cls = self.pop()
            push(self.construct(cls, args))
        elif op == "NEWOBJ_EX":
            _kwargs, args = self.pop(), self.pop()
            cls = self.pop()
            push(self.construct(cls, args))
        elif op == "BUILD":
            state = self.pop()
            self.build(self.top(), state)
        elif op == "PERSID":
            push(self.persistent_load(arg))
        elif op == "BINPERSID":
            push(self.persistent_load(self.pop()))
        elif op in ("EXT1", "EXT2", "EXT4"):
            name = f"copyreg extension {arg}"
            self.skipped.setdefault(name, None)
            push(Skipped(name))
        else:  # NEXT_BUFFER, READONLY_BUFFER, anything new
            raise PickleRefused(f"unsupported pickle opcode {op}")
        return _CONTINUE

    def construct(self, cls: Any, args: Any) -> Any:
        if isinstance(cls, Skipped):
            return SkippedObject(cls.name)
        if isinstance(cls, _Marker) and cls.name == "collections.OrderedDict":
            return OrderedDict()
        raise PickleRefused(f"cannot construct a {getattr(cls, 'name', type(cls).__name__)}")


_CONTINUE = object()
_SCALAR_OPS = {
    "INT",
    "BININT",
    "BININT1",
    "BININT2",
    "LONG",
    "LONG1",
    "LONG4",
    "FLOAT",
    "BINFLOAT",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "BINBYTES",
    "SHORT_BINBYTES",
    "BINBYTES8",
    "BYTEARRAY8",
    "UNICODE",
    "BINUNICODE",
    "SHORT_BINUNICODE",
    "BINUNICODE8",
}


_KEY_TYPES = (str, int, float, bool, bytes, type(None))


def _key(key: Any) -> Any:
    """A dict key or set item: a scalar or a flat tuple of scalars (hashing a deeply nested
    tuple recurses in C, so anything else is refused rather than hashed)."""
    if isinstance(key, _KEY_TYPES) or (
        isinstance(key, tuple)
        and len(key) <= MAX_DIMS
        and all(isinstance(k, _KEY_TYPES) for k in key)
    ):
        return key
    raise PickleRefused(f"a dict key or set item of type {type(key).__name__}")


def _as(obj: Any, kind: type) -> Any:
    if not isinstance(obj, kind):
        raise PickleRefused(f"expected a {kind.__name__}, found a {type(obj).__name__}")
    return obj


def _pairs(args: tuple) -> bool:
    return (
        len(args) == 1
        and isinstance(args[0], list)
        and all(isinstance(p, tuple) and len(p) == 2 for p in args[0])
    )


def archive_root(zf: zipfile.ZipFile) -> str:
    """The folder holding ``data.pkl`` in a torch zip (its name varies with the torch version)."""
    roots = [n[: -len("/data.pkl")] for n in zf.namelist() if n.endswith("/data.pkl")]
    roots = [r for r in roots if r and "/" not in r]
    if len(roots) != 1:
        raise PickleRefused("not a torch checkpoint archive (no single <root>/data.pkl)")
    return roots[0]


def unpickle_archive(zf: zipfile.ZipFile) -> Unpickled:
    """Interpret ``<root>/data.pkl`` of an open torch zip. Raises ``PickleRefused``."""
    root = archive_root(zf)
    names = set(zf.namelist())
    if f"{root}/byteorder" in names:
        order = zf.read(f"{root}/byteorder").strip()
        if order != b"little":
            raise PickleRefused(f"storages are stored {order.decode('ascii', 'replace')}-endian")
    info = zf.getinfo(f"{root}/data.pkl")
    if info.file_size > MAX_PICKLE_BYTES:
        raise PickleRefused("data.pkl is implausibly large for a state dict")
    machine = _Machine(_Archive(zf, root))
    result = machine.run(zf.read(info))
    return Unpickled(result, list(machine.skipped))
