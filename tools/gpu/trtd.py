"""ctypes binding of packages/trtllm/include/trtd_executor.h (TRTD_ABI_VERSION 3) and a small wrapper.

    import trtd
    with trtd.Executor.open("packages/trtllm/build/libtrtd_ref.so", model_dir, kv_memory_bytes=1 << 30) as ex:
        rid = ex.enqueue([1, 2, 3], max_new=8)
        out = ex.drain([rid])[rid]          # Result: tokens, finish_reason, arrival times
        logits = ex.compute_logits([1, 2, 3])  # numpy float32 [3, vocab]

Every non-OK status raises TrtdError (status, function, trtd_last_error()). Standard library + numpy only.
The struct definitions follow the header field by field; their sizes are asserted against the sizes pinned
by packages/trtllm/native/src/abi_layout_check.c.
"""
import ctypes as C
import os
import time

import numpy as np

ABI_VERSION = 3

# trtd_status
OK = 0
INVALID_ARGUMENT = -1
NOT_FOUND = -2
INVALID_STATE = -3
KV_CAPACITY = -4
KV_EXHAUSTED = -5
BUFFER_TOO_SMALL = -6
MODEL_LOAD = -7
SHUT_DOWN = -8
UNSUPPORTED = -9
ENGINE_NATIVE_TRANSFER = -10
OUT_OF_MEMORY = -11
QUEUE_FULL = -12
INTERNAL = -100
STATUS_NAMES = {
    OK: "OK", INVALID_ARGUMENT: "INVALID_ARGUMENT", NOT_FOUND: "NOT_FOUND", INVALID_STATE: "INVALID_STATE",
    KV_CAPACITY: "KV_CAPACITY", KV_EXHAUSTED: "KV_EXHAUSTED", BUFFER_TOO_SMALL: "BUFFER_TOO_SMALL",
    MODEL_LOAD: "MODEL_LOAD", SHUT_DOWN: "SHUT_DOWN", UNSUPPORTED: "UNSUPPORTED",
    ENGINE_NATIVE_TRANSFER: "ENGINE_NATIVE_TRANSFER", OUT_OF_MEMORY: "OUT_OF_MEMORY", QUEUE_FULL: "QUEUE_FULL",
    INTERNAL: "INTERNAL",
}

# trtd_request_type
CONTEXT_AND_GENERATION = 0
CONTEXT_ONLY = 1
GENERATION_ONLY = 2

# trtd_finish_reason
FINISH_NOT_FINISHED = 0
FINISH_LENGTH = 1
FINISH_END_ID = 2
FINISH_STOP_TOKEN = 3
FINISH_CANCELLED = 4
FINISH_ERROR = 5
FINISH_NAMES = {0: "NOT_FINISHED", 1: "LENGTH", 2: "END_ID", 3: "STOP_TOKEN", 4: "CANCELLED", 5: "ERROR"}

# trtd_memory_kind
MEMORY_HOST = 0
MEMORY_HOST_PINNED = 1
MEMORY_CUDA_DEVICE = 2
MEMORY_ENGINE_HANDLE = 3
MEMORY_NAMES = {0: "HOST", 1: "HOST_PINNED", 2: "CUDA_DEVICE", 3: "ENGINE_HANDLE"}

# trtd_kv_dtype
KV_FLOAT32 = 0
KV_FLOAT16 = 1
KV_BFLOAT16 = 2
KV_FP8_E4M3 = 3
KV_DTYPE_NAMES = {0: "float32", 1: "float16", 2: "bfloat16", 3: "fp8_e4m3"}


# ------------------------------------------------------------------------------------------------
# Structs (field order and types exactly as in the header)
# ------------------------------------------------------------------------------------------------

class ExecutorConfig(C.Structure):
    _fields_ = [
        ("kv_memory_bytes", C.c_int64),
        ("max_batch_size", C.c_int32),
        ("max_tokens_per_iteration", C.c_int32),
        ("kv_tokens_per_block", C.c_int32),
        ("kv_block_count", C.c_int32),
        ("num_threads", C.c_int32),
        ("max_context_length", C.c_int32),
        ("device_id", C.c_int32),
        ("max_queued_requests", C.c_int32),
    ]


class ModelInfo(C.Structure):
    _fields_ = [
        ("vocab_size", C.c_int32),
        ("num_layers", C.c_int32),
        ("hidden_size", C.c_int32),
        ("num_heads", C.c_int32),
        ("num_kv_heads", C.c_int32),
        ("head_dim", C.c_int32),
        ("max_context_length", C.c_int32),
        ("num_eos_token_ids", C.c_int32),
        ("eos_token_ids", C.c_int32 * 8),
        ("fingerprint", C.c_char * 32),
    ]


class SamplingParams(C.Structure):
    _fields_ = [
        ("seed", C.c_uint64),
        ("temperature", C.c_float),
        ("top_p", C.c_float),
        ("top_k", C.c_int32),
    ]


class ContextPhaseParams(C.Structure):
    _fields_ = [
        ("opaque_state", C.c_void_p),
        ("opaque_state_size", C.c_uint64),
        ("kv_import_id", C.c_uint64),
        ("first_token", C.c_int32),
    ]


class Request(C.Structure):
    _fields_ = [
        ("prompt", C.POINTER(C.c_int32)),
        ("stop_token_ids", C.POINTER(C.c_int32)),
        ("context_phase", C.POINTER(ContextPhaseParams)),
        ("sampling", SamplingParams),
        ("prompt_len", C.c_int32),
        ("max_new_tokens", C.c_int32),
        ("end_id", C.c_int32),
        ("num_stop_token_ids", C.c_int32),
        ("type", C.c_int32),
        ("generated_offset", C.c_int32),  # ABI 2
    ]


class Response(C.Structure):
    _fields_ = [
        ("request_id", C.c_uint64),
        ("token_offset", C.c_int32),
        ("num_tokens", C.c_int32),
        ("finish_reason", C.c_int32),
        ("error_status", C.c_int32),
        ("error_message", C.c_char * 200),
        ("is_final", C.c_bool),
    ]


class ExecutorStats(C.Structure):
    _fields_ = [
        ("iterations", C.c_uint64),
        ("generated_tokens", C.c_uint64),
        ("prompt_tokens", C.c_uint64),
        ("active_requests", C.c_int32),
        ("queued_requests", C.c_int32),
        ("kv_blocks_total", C.c_int32),
        ("kv_blocks_used", C.c_int32),
        ("kv_blocks_free", C.c_int32),
        ("pinned_exports", C.c_int32),
        ("pending_imports", C.c_int32),
    ]


class KvLayout(C.Structure):
    _fields_ = [
        ("bytes_per_block", C.c_uint64),
        ("num_layers", C.c_int32),
        ("num_kv_heads", C.c_int32),
        ("head_dim", C.c_int32),
        ("tokens_per_block", C.c_int32),
        ("dtype", C.c_int32),
        ("memory_kind", C.c_int32),
        ("fingerprint", C.c_char * 32),
    ]


class KvSegment(C.Structure):
    _fields_ = [
        ("data", C.c_void_p),
        ("size", C.c_uint64),
        ("memory_kind", C.c_int32),
        ("device_id", C.c_int32),
    ]


class KvExportInfo(C.Structure):
    _fields_ = [
        ("bytes", C.c_uint64),
        ("num_tokens", C.c_int32),
        ("num_blocks", C.c_int32),
        ("memory_kind", C.c_int32),
    ]


# The sizes abi_layout_check.c pins (x86-64 / aarch64 Linux).
_SIZES = {ExecutorConfig: 40, ModelInfo: 96, SamplingParams: 24, ContextPhaseParams: 32, Request: 72,
          Response: 232, ExecutorStats: 56, KvLayout: 64, KvSegment: 24, KvExportInfo: 24}
for _t, _n in _SIZES.items():
    assert C.sizeof(_t) == _n, f"{_t.__name__}: sizeof {C.sizeof(_t)} != {_n}"
assert Request.type.offset == 64 and Request.generated_offset.offset == 68


def _struct_dict(s):
    out = {}
    for name, typ in s._fields_:
        v = getattr(s, name)
        if isinstance(v, bytes):
            v = v.decode(errors="replace")
        elif isinstance(v, C.Array):
            v = list(v)
        elif isinstance(v, C.Structure):
            v = _struct_dict(v)
        out[name] = v
    return out


# ------------------------------------------------------------------------------------------------
# Library
# ------------------------------------------------------------------------------------------------

class TrtdError(RuntimeError):
    def __init__(self, status, func, message):
        self.status = int(status)
        self.name = STATUS_NAMES.get(self.status, str(self.status))
        self.func = func
        self.message = message
        super().__init__(f"{func}: {self.name} ({self.status}): {message}")


_VP, _U64, _I32, _I64 = C.c_void_p, C.c_uint64, C.c_int32, C.c_int64
_SIGNATURES = {
    # name: (restype, argtypes)
    "trtd_abi_version": (C.c_int32, []),
    "trtd_version": (C.c_char_p, []),
    "trtd_last_error": (C.c_char_p, []),
    "trtd_executor_default_config": (ExecutorConfig, []),
    "trtd_executor_create": (C.c_int, [C.c_char_p, C.POINTER(ExecutorConfig), C.POINTER(_VP)]),
    "trtd_executor_destroy": (None, [_VP]),
    "trtd_executor_model_info": (C.c_int, [_VP, C.POINTER(ModelInfo)]),
    "trtd_sampling_default_params": (SamplingParams, []),
    "trtd_executor_enqueue": (C.c_int, [_VP, C.POINTER(Request), C.POINTER(_U64)]),
    "trtd_executor_cancel": (C.c_int, [_VP, _U64]),
    "trtd_executor_await_responses": (C.c_int, [_VP, _I32, C.POINTER(Response), _I32, C.POINTER(_I32), _I32,
                                                 C.POINTER(_I32)]),
    "trtd_executor_notify_fd": (C.c_int, [_VP, C.c_bool, C.POINTER(_I32)]),
    "trtd_executor_context_phase_state": (C.c_int, [_VP, _U64, _VP, _U64, C.POINTER(_U64)]),
    "trtd_executor_get_stats": (C.c_int, [_VP, C.POINTER(ExecutorStats)]),
    "trtd_executor_kv_layout": (C.c_int, [_VP, C.POINTER(KvLayout)]),
    "trtd_executor_kv_export_info": (C.c_int, [_VP, _U64, C.POINTER(KvExportInfo)]),
    "trtd_executor_kv_export_segments": (C.c_int, [_VP, _U64, C.POINTER(KvSegment), _I32, C.POINTER(_I32)]),
    "trtd_executor_kv_export_copy": (C.c_int, [_VP, _U64, _VP, _U64]),
    "trtd_executor_kv_export_release": (C.c_int, [_VP, _U64]),
    "trtd_executor_kv_import_reserve": (C.c_int, [_VP, _I32, C.POINTER(_U64)]),
    "trtd_executor_kv_import_segments": (C.c_int, [_VP, _U64, C.POINTER(KvSegment), _I32, C.POINTER(_I32)]),
    "trtd_executor_kv_import_abort": (C.c_int, [_VP, _U64]),
    # ABI 3: device KV transfer
    "trtd_executor_device_uuid": (C.c_int, [_VP, C.c_char_p, _I32]),
    "trtd_executor_kv_export_device": (C.c_int, [_VP, _U64, _VP, _U64, C.POINTER(_U64)]),
    "trtd_executor_kv_import_device": (C.c_int, [_VP, _U64, _VP, _U64]),
    # debugging
    "trtd_executor_compute_logits": (C.c_int, [_VP, C.POINTER(_I32), _I32, C.POINTER(C.c_float), _I64]),
}

_LIBS = {}


class Lib:
    """One loaded executor library with every function of the header declared."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"executor library not found: {self.path}")
        self.dll = C.CDLL(self.path)
        missing = [n for n in _SIGNATURES if not hasattr(self.dll, n)]
        if missing:
            raise RuntimeError(f"{self.path} lacks {', '.join(missing)} (not an ABI {ABI_VERSION} executor?)")
        for name, (res, args) in _SIGNATURES.items():
            fn = getattr(self.dll, name)
            fn.restype = res
            fn.argtypes = args
            if name.startswith("trtd_executor_"):  # self.executor_create, ... (raw ctypes functions)
                setattr(self, name[len("trtd_"):], fn)
        self.abi_version = self.dll.trtd_abi_version()
        if self.abi_version != ABI_VERSION:
            raise RuntimeError(f"{self.path} implements trtd_executor ABI {self.abi_version}; "
                               f"this binding needs {ABI_VERSION}")
        self.version = self.dll.trtd_version().decode(errors="replace")

    @classmethod
    def get(cls, path):
        key = os.path.abspath(path)
        if key not in _LIBS:
            _LIBS[key] = cls(key)
        return _LIBS[key]

    def last_error(self):
        s = self.dll.trtd_last_error()
        return s.decode(errors="replace") if s else ""

    def check(self, func, status):
        if status != OK:
            raise TrtdError(status, func, self.last_error())
        return status

    def default_config(self):
        return self.dll.trtd_executor_default_config()

    def default_sampling(self):
        return self.dll.trtd_sampling_default_params()


# ------------------------------------------------------------------------------------------------
# Wrapper
# ------------------------------------------------------------------------------------------------

class Result:
    """Everything one request produced: tokens, finish reason, error, and when each response arrived."""

    def __init__(self, rid):
        self.id = rid
        self.tokens = []
        self.final = False
        self.finish_reason = FINISH_NOT_FINISHED
        self.error_status = OK
        self.error_message = ""
        self.arrivals = []  # (perf_counter seconds, number of tokens in that response)
        self.t_enqueue = None

    @property
    def finish_name(self):
        return FINISH_NAMES.get(self.finish_reason, str(self.finish_reason))

    @property
    def t_first(self):
        for t, n in self.arrivals:
            if n > 0:
                return t
        return None

    @property
    def t_final(self):
        return self.arrivals[-1][0] if self.arrivals else None

    def __repr__(self):
        return (f"Result(id={self.id}, {len(self.tokens)} tokens, {self.finish_name}"
                + (f", error {STATUS_NAMES.get(self.error_status)}: {self.error_message}" if self.error_status else "")
                + ")")


def _addr(buf, writable=False):
    """(address, nbytes, keepalive) of a buffer-protocol object (bytes, bytearray, mmap, numpy)."""
    if isinstance(buf, np.ndarray):
        if not buf.flags["C_CONTIGUOUS"]:
            raise ValueError("buffer must be C-contiguous")
        return buf.ctypes.data, buf.nbytes, buf
    if isinstance(buf, bytes) and not writable:
        arr = np.frombuffer(buf, dtype=np.uint8)
        return arr.ctypes.data, arr.nbytes, arr
    mv = memoryview(buf).cast("B")
    if writable and mv.readonly:
        raise ValueError("buffer is read-only")
    arr = np.frombuffer(mv, dtype=np.uint8)
    return arr.ctypes.data, arr.nbytes, (arr, mv)


class Executor:
    MAX_RESPONSES = 512
    MAX_TOKENS = 1 << 17

    def __init__(self, lib, model_dir, **config):
        self.lib = lib if isinstance(lib, Lib) else Lib.get(lib)
        cfg = self.lib.default_config()
        for k, v in config.items():
            if not hasattr(cfg, k):
                raise TypeError(f"unknown trtd_executor_config field {k!r}")
            setattr(cfg, k, int(v))
        self.config = _struct_dict(cfg)
        self.model_dir = model_dir
        h = C.c_void_p()
        t0 = time.perf_counter()
        self.lib.check("trtd_executor_create",
                       self.lib.executor_create(os.fsencode(model_dir), C.byref(cfg), C.byref(h)))
        self.create_s = time.perf_counter() - t0
        self.h = h
        self._resp = (Response * self.MAX_RESPONSES)()
        self._toks = (C.c_int32 * self.MAX_TOKENS)()
        self._results = {}
        self.info = self.model_info()
        self.vocab = self.info["vocab_size"]

    @classmethod
    def open(cls, lib, model_dir, **config):
        return cls(lib, model_dir, **config)

    def close(self):
        if getattr(self, "h", None) and self.h.value:
            self.lib.executor_destroy(self.h)
            self.h = C.c_void_p()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check(self, func, status):
        return self.lib.check(func, status)

    # -- info ------------------------------------------------------------------------------------
    def model_info(self):
        mi = ModelInfo()
        self._check("trtd_executor_model_info", self.lib.executor_model_info(self.h, C.byref(mi)))
        d = _struct_dict(mi)
        d["eos_token_ids"] = d["eos_token_ids"][: d["num_eos_token_ids"]]
        return d

    def kv_layout(self):
        kl = KvLayout()
        self._check("trtd_executor_kv_layout", self.lib.executor_kv_layout(self.h, C.byref(kl)))
        d = _struct_dict(kl)
        d["dtype_name"] = KV_DTYPE_NAMES.get(d["dtype"], str(d["dtype"]))
        d["memory_kind_name"] = MEMORY_NAMES.get(d["memory_kind"], str(d["memory_kind"]))
        return d

    def stats(self):
        st = ExecutorStats()
        self._check("trtd_executor_get_stats", self.lib.executor_get_stats(self.h, C.byref(st)))
        return _struct_dict(st)

    def wait_idle(self, timeout_s=5.0):
        """Polls stats until nothing is active, queued, used, pinned or pending (or the timeout). Returns
        (idle, stats)."""
        t_end = time.monotonic() + timeout_s
        while True:
            s = self.stats()
            idle = (s["active_requests"] == 0 and s["queued_requests"] == 0 and s["kv_blocks_used"] == 0
                    and s["pinned_exports"] == 0 and s["pending_imports"] == 0)
            if idle or time.monotonic() > t_end:
                return idle, s
            time.sleep(0.01)

    def notify_fd(self, take=False):
        fd = C.c_int32()
        self._check("trtd_executor_notify_fd", self.lib.executor_notify_fd(self.h, bool(take), C.byref(fd)))
        return fd.value

    # -- requests --------------------------------------------------------------------------------
    def enqueue(self, prompt, max_new, type=CONTEXT_AND_GENERATION, temperature=0.0, top_p=1.0, top_k=0, seed=0,
                end_id=-1, stop=(), import_id=0, first_token=None, opaque_state=None, generated_offset=0):
        p = np.ascontiguousarray(prompt, dtype=np.int32)
        stop_arr = np.ascontiguousarray(list(stop), dtype=np.int32)
        r = Request()
        r.prompt = p.ctypes.data_as(C.POINTER(C.c_int32))
        r.stop_token_ids = stop_arr.ctypes.data_as(C.POINTER(C.c_int32)) if len(stop_arr) else None
        cp = None
        if type == GENERATION_ONLY:
            cp = ContextPhaseParams()
            if opaque_state:
                ob = C.create_string_buffer(bytes(opaque_state), len(opaque_state))
                cp.opaque_state = C.cast(ob, C.c_void_p)
                cp.opaque_state_size = len(opaque_state)
            cp.kv_import_id = int(import_id)
            cp.first_token = int(first_token if first_token is not None else -1)
            r.context_phase = C.pointer(cp)
        r.sampling.seed = int(seed)
        r.sampling.temperature = float(temperature)
        r.sampling.top_p = float(top_p)
        r.sampling.top_k = int(top_k)
        r.prompt_len = len(p)
        r.max_new_tokens = int(max_new)
        r.end_id = int(end_id)
        r.num_stop_token_ids = len(stop_arr)
        r.type = int(type)
        r.generated_offset = int(generated_offset)
        rid = C.c_uint64()
        t = time.perf_counter()
        self._check("trtd_executor_enqueue", self.lib.executor_enqueue(self.h, C.byref(r), C.byref(rid)))
        res = self._results.setdefault(rid.value, Result(rid.value))
        res.t_enqueue = t
        return rid.value

    def cancel(self, rid):
        self._check("trtd_executor_cancel", self.lib.executor_cancel(self.h, int(rid)))

    def poll(self, timeout_ms=0):
        """One await_responses call; folds the responses into the per-request Results. Returns how many."""
        n = C.c_int32()
        self._check("trtd_executor_await_responses",
                    self.lib.executor_await_responses(self.h, int(timeout_ms), self._resp, self.MAX_RESPONSES,
                                                      self._toks, self.MAX_TOKENS, C.byref(n)))
        t = time.perf_counter()
        for i in range(n.value):
            r = self._resp[i]
            res = self._results.setdefault(r.request_id, Result(r.request_id))
            if r.num_tokens:
                res.tokens.extend(self._toks[r.token_offset: r.token_offset + r.num_tokens])
            res.arrivals.append((t, r.num_tokens))
            if r.is_final:
                res.final = True
                res.finish_reason = r.finish_reason
                res.error_status = r.error_status
                res.error_message = r.error_message.decode(errors="replace")
        return n.value

    def drain(self, ids, timeout_s=300.0, stall_s=120.0, poll_ms=50):
        """Awaits responses until every id in ids has its final response. Returns {id: Result} (and forgets
        them). Raises TimeoutError (with the executor's stats) past timeout_s in all, or stall_s without any
        response."""
        ids = [int(i) for i in ids]
        for i in ids:
            self._results.setdefault(i, Result(i))
        t0 = last = time.monotonic()
        while not all(self._results[i].final for i in ids):
            now = time.monotonic()
            if now - t0 > timeout_s or now - last > stall_s:
                waiting = [i for i in ids if not self._results[i].final]
                raise TimeoutError(f"drain: {len(waiting)} of {len(ids)} requests not final after {now - t0:.1f} s "
                                   f"({now - last:.1f} s without a response); stats {self.stats()}")
            if self.poll(poll_ms):
                last = time.monotonic()
        return {i: self._results.pop(i) for i in ids}

    def generate(self, prompt, max_new, **kw):
        """enqueue + drain of one request; returns its Result."""
        rid = self.enqueue(prompt, max_new, **kw)
        return self.drain([rid])[rid]

    def context_phase_state(self, rid):
        size = C.c_uint64()
        self._check("trtd_executor_context_phase_state",
                    self.lib.executor_context_phase_state(self.h, int(rid), None, 0, C.byref(size)))
        if size.value == 0:
            return b""
        buf = C.create_string_buffer(size.value)
        self._check("trtd_executor_context_phase_state",
                    self.lib.executor_context_phase_state(self.h, int(rid), buf, size.value, C.byref(size)))
        return buf.raw[: size.value]

    # -- KV export / import (host segments) -----------------------------------------------------
    def export_info(self, rid):
        ei = KvExportInfo()
        self._check("trtd_executor_kv_export_info", self.lib.executor_kv_export_info(self.h, int(rid), C.byref(ei)))
        return _struct_dict(ei)

    def _segments(self, fn, func, xid):
        n = C.c_int32()
        st = fn(self.h, int(xid), None, 0, C.byref(n))
        if st not in (OK, BUFFER_TOO_SMALL):
            self._check(func, st)
        if n.value == 0:
            return []
        segs = (KvSegment * n.value)()
        self._check(func, fn(self.h, int(xid), segs, n.value, C.byref(n)))
        return [dict(data=s.data or 0, size=s.size, memory_kind=s.memory_kind, device_id=s.device_id) for s in segs]

    def export_segments(self, rid):
        return self._segments(self.lib.executor_kv_export_segments, "trtd_executor_kv_export_segments", rid)

    def export_copy(self, rid, out=None):
        """Copies the pinned KV into out (any writable buffer of >= bytes) or a new numpy uint8 array."""
        info = self.export_info(rid)
        if out is None:
            out = np.empty(info["bytes"], dtype=np.uint8)
        addr, nbytes, _keep = _addr(out, writable=True)
        self._check("trtd_executor_kv_export_copy",
                    self.lib.executor_kv_export_copy(self.h, int(rid), C.c_void_p(addr), nbytes))
        return out

    def read_host_segments(self, segs):
        """Bytes of host-memory segments (HOST or HOST_PINNED), back to back, via memmove."""
        total = sum(s["size"] for s in segs)
        out = np.empty(total, dtype=np.uint8)
        off = 0
        for s in segs:
            if s["memory_kind"] not in (MEMORY_HOST, MEMORY_HOST_PINNED):
                raise ValueError(f"segment memory kind {MEMORY_NAMES.get(s['memory_kind'])} is not host memory")
            C.memmove(out.ctypes.data + off, s["data"], s["size"])
            off += s["size"]
        return out

    def export_release(self, rid):
        self._check("trtd_executor_kv_export_release", self.lib.executor_kv_export_release(self.h, int(rid)))

    def import_reserve(self, num_tokens):
        iid = C.c_uint64()
        self._check("trtd_executor_kv_import_reserve",
                    self.lib.executor_kv_import_reserve(self.h, int(num_tokens), C.byref(iid)))
        return iid.value

    def import_segments(self, iid):
        return self._segments(self.lib.executor_kv_import_segments, "trtd_executor_kv_import_segments", iid)

    def import_write_host(self, iid, data):
        """Writes data (num_blocks * bytes_per_block, e.g. from kv_export_copy) into the import's host segments
        with ctypes.memmove. Returns the segments."""
        segs = self.import_segments(iid)
        addr, nbytes, _keep = _addr(data)
        total = sum(s["size"] for s in segs)
        if nbytes != total:
            raise ValueError(f"import {iid}: {nbytes} bytes of KV for {len(segs)} segments of {total} bytes")
        off = 0
        for s in segs:
            if s["memory_kind"] not in (MEMORY_HOST, MEMORY_HOST_PINNED):
                raise ValueError(f"import segment memory kind {MEMORY_NAMES.get(s['memory_kind'])}: not host memory")
            C.memmove(s["data"], addr + off, s["size"])
            off += s["size"]
        return segs

    def import_abort(self, iid):
        self._check("trtd_executor_kv_import_abort", self.lib.executor_kv_import_abort(self.h, int(iid)))

    # -- device KV transfer (ABI 3) ---------------------------------------------------------------
    def device_uuid(self):
        buf = C.create_string_buffer(128)
        self._check("trtd_executor_device_uuid", self.lib.executor_device_uuid(self.h, buf, len(buf)))
        return buf.value.decode(errors="replace")

    def export_device(self, rid):
        """The device descriptor bytes of a finished context-only request (size-first protocol)."""
        size = C.c_uint64()
        self._check("trtd_executor_kv_export_device",
                    self.lib.executor_kv_export_device(self.h, int(rid), None, 0, C.byref(size)))
        buf = C.create_string_buffer(max(1, size.value))
        self._check("trtd_executor_kv_export_device",
                    self.lib.executor_kv_export_device(self.h, int(rid), buf, size.value, C.byref(size)))
        return buf.raw[: size.value]

    def import_device(self, iid, descriptor):
        descriptor = bytes(descriptor)
        buf = C.create_string_buffer(descriptor, len(descriptor))
        self._check("trtd_executor_kv_import_device",
                    self.lib.executor_kv_import_device(self.h, int(iid), buf, len(descriptor)))

    # -- debugging --------------------------------------------------------------------------------
    def compute_logits(self, tokens):
        """Logits of every position, numpy float32 [n, vocab] (the buffer is NaN-filled first)."""
        t = np.ascontiguousarray(tokens, dtype=np.int32)
        out = np.full((len(t), self.vocab), np.nan, dtype=np.float32)
        self._check("trtd_executor_compute_logits",
                    self.lib.executor_compute_logits(self.h, t.ctypes.data_as(C.POINTER(C.c_int32)), len(t),
                                                     out.ctypes.data_as(C.POINTER(C.c_float)), out.size))
        return out


def is_status(exc, *statuses):
    return isinstance(exc, TrtdError) and exc.status in statuses
