"""Helpers shared by check_numerics.py and bench_cuda.py: HF reference models, the exporter child process
(a second executor in another process, driven over two pipes), time limits, tables.

The exporter child protocol (one JSON object per line; parent -> child on cmd_fd, child -> parent on msg_fd):
  child:  {"ready": true, "load_s", "version", "layout", "uuid" | "uuid_error", "pid"}   (after loading)
  parent: {"cmd": "export", "jobs": [{"name", "prompt", "max_new", "sampling": {...}, "host_copy", "device"}]}
  child:  {"jobs": [{"name", "rid", "first_token", "finish", "error", "t_context_s", "info", "segments",
                     "segment_kinds", "segments_match_copy", "file", "desc" (hex) | null, "desc_error"}]}
          (the exports stay pinned)
  parent: {"cmd": "release", "rids": [...]}   -> child: {"released": [...], "idle": bool, "stats": {...}}
  parent: {"cmd": "quit"} (or EOF: the parent is gone) -> child releases everything, replies (quit only), exits.
"""
import faulthandler
import glob
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np

import trtd

HERE = os.path.dirname(os.path.abspath(__file__))


def log(*a):
    print(*a, flush=True)


def set_time_limit(seconds):
    """Dumps every thread's Python stack and exits (faulthandler: _exit(1)) at the limit, so a hang inside a native call
    is located before an outer `timeout` kills the process silently."""
    if seconds and seconds > 0:
        faulthandler.dump_traceback_later(seconds, exit=True)
    faulthandler.enable()


def shm_dir():
    d = "/dev/shm"
    return d if os.path.isdir(d) and os.access(d, os.W_OK) else tempfile.gettempdir()


def parse_config(text):
    """'k=v,k=v' -> {k: int(v)} for trtd_executor_config fields."""
    out = {}
    for item in (text or "").split(","):
        if item.strip():
            k, v = item.split("=", 1)
            out[k.strip()] = int(float(v))
    return out


# ------------------------------------------------------------------------------------------------
# HF reference models
# ------------------------------------------------------------------------------------------------

def pick_device(name=None):
    import torch
    if name:
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def model_dtype_name(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    d = cfg.get("dtype") or cfg.get("torch_dtype") or "bfloat16"
    return d if d in ("bfloat16", "float16", "float32") else "bfloat16"


def safetensors_files(model_dir):
    return sorted(glob.glob(os.path.join(model_dir, "*.safetensors")))


def weight_bytes(model_dir):
    """Sum of the tensor byte sizes in the safetensors headers: (total, {name: bytes})."""
    sizes = {}
    for f in safetensors_files(model_dir):
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            hdr = json.loads(fh.read(n))
        for k, v in hdr.items():
            if k != "__metadata__":
                sizes[k] = v["data_offsets"][1] - v["data_offsets"][0]
    return sum(sizes.values()), sizes


def load_hf(model_dir, dtype, attn, device):
    """The transformers model of model_dir (the class its config.json names: LlamaForCausalLM, Qwen2ForCausalLM, ...)
    in dtype with attn_implementation attn, built on device and filled from the safetensors files straight onto the
    device (same weights as from_pretrained; avoids a CPU round trip)."""
    import torch
    import safetensors.torch as st
    import transformers
    from transformers import AutoConfig
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    cfg = AutoConfig.from_pretrained(model_dir)
    fp8 = getattr(cfg, "quantization_config", None) is not None
    if fp8:  # an FP8 checkpoint: the model is built plain and gets the dequantized weights (dequantize_fp8)
        del cfg.quantization_config
    model_cls = getattr(transformers, (cfg.architectures or ["LlamaForCausalLM"])[0])
    with torch.device(device):
        model = model_cls._from_config(cfg, dtype=dtype, attn_implementation=attn)
    sd = {}
    for f in safetensors_files(model_dir):
        sd.update(st.load_file(f, device=str(device)))
    if fp8:
        sd = dequantize_fp8(sd, dtype)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    del sd
    if cfg.tie_word_embeddings:
        missing = [m for m in missing if m != "lm_head.weight"]
        model.tie_weights()
    if missing or unexpected:
        raise RuntimeError(f"{model_dir}: missing tensors {missing}, unexpected {unexpected}")
    return model.eval()


def dequantize_fp8(sd, dtype):
    """A compressed-tensors FP8 state dict dequantized: each F8_E4M3 weight times its weight_scale (per channel [out, 1]
    or per tensor), in dtype; the scale and input_scale tensors dropped."""
    import torch
    out = {}
    for name, t in sd.items():
        if name.endswith(".weight_scale") or name.endswith(".input_scale"):
            continue
        if t.dtype == torch.float8_e4m3fn:
            scale = sd[name[: -len(".weight")] + ".weight_scale"].float()
            out[name] = (t.float() * scale.reshape(-1, 1) if scale.numel() > 1 else t.float() * scale.reshape(())).to(dtype)
        else:
            out[name] = t
    return out


def fp32_copy(model, attn="eager"):
    """An fp32 copy (bf16/fp16 -> fp32 is exact) with another attention implementation."""
    import copy
    m = copy.deepcopy(model).float()
    if hasattr(m, "set_attn_implementation"):
        m.set_attn_implementation(attn)
    else:
        m.config._attn_implementation = attn
    return m.eval()


def hf_logits(model, tokens, device):
    """float32 logits [n, vocab] of one sequence (torch tensor on device)."""
    import torch
    with torch.inference_mode():
        ids = torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=device)[None]
        return model(ids).logits[0].float()


# ------------------------------------------------------------------------------------------------
# Exporter child process
# ------------------------------------------------------------------------------------------------

class _LineReader:
    def __init__(self, fd):
        self.fd = fd
        self.buf = b""

    def readline(self, timeout, alive=None):
        t_end = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = t_end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from the exporter process within %.0f s" % timeout)
            r, _, _ = select.select([self.fd], [], [], min(left, 1.0))
            if r:
                chunk = os.read(self.fd, 1 << 20)
                if not chunk:
                    raise EOFError("the exporter process closed its pipe")
                self.buf += chunk
            elif alive is not None and not alive():
                raise EOFError("the exporter process exited")
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


class ExporterProc:
    """Parent side: starts `python3 SCRIPT --role exporter ...` and talks to it."""

    def __init__(self, script, lib, model_dir, config, time_limit=0, tag="exporter"):
        cmd_r, self.cmd_w = os.pipe()
        self.msg_r, msg_w = os.pipe()
        argv = [sys.executable, script, "--role", "exporter", "--lib", lib, "--model", model_dir,
                "--cmd-fd", str(cmd_r), "--msg-fd", str(msg_w), "--config-json", json.dumps(config),
                "--time-limit", str(int(time_limit or 0))]
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(argv, pass_fds=(cmd_r, msg_w), stdin=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(msg_w)
        self.reader = _LineReader(self.msg_r)
        self.ready = None
        self.tag = tag

    def alive(self):
        return self.proc.poll() is None

    def _recv(self, timeout):
        try:
            msg = self.reader.readline(timeout, self.alive)
        except EOFError as e:
            rc = self.proc.poll()
            raise RuntimeError(f"{self.tag}: {e} (exit code {rc})")
        if msg.get("fatal"):
            raise RuntimeError(f"{self.tag} failed: {msg['fatal']}")
        return msg

    def wait_ready(self, timeout=600):
        if self.ready is None:
            self.ready = self._recv(timeout)
        return self.ready

    def request(self, cmd, timeout=300):
        self.wait_ready(timeout)
        os.write(self.cmd_w, (json.dumps(cmd) + "\n").encode())
        return self._recv(timeout)

    def close(self, timeout=60):
        """Asks the child to release everything and exit; returns its last reply (or None)."""
        last = None
        if self.alive():
            try:
                if self.ready is not None:
                    last = self.request({"cmd": "quit"}, timeout=timeout)
            except Exception as e:  # noqa: BLE001
                log(f"  [{self.tag}] quit failed: {e}")
        try:
            os.close(self.cmd_w)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"  [{self.tag}] did not exit; killing pid {self.proc.pid}")
            self.proc.kill()
            self.proc.wait()
        try:
            os.close(self.msg_r)
        except OSError:
            pass
        return last


def exporter_main(args):
    """Child side (--role exporter)."""
    set_time_limit(args.time_limit)
    out = os.fdopen(args.msg_fd, "w", buffering=1)
    cmd_in = _LineReader(args.cmd_fd)

    def send(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    def say(*a):
        print("  [exporter]", *a, file=sys.stderr, flush=True)

    pinned = {}  # rid -> file path or None
    ex = None
    try:
        config = json.loads(args.config_json)
        t0 = time.monotonic()
        ex = trtd.Executor.open(args.lib, args.model, **config)
        ready = {"ready": True, "load_s": round(time.monotonic() - t0, 3), "version": ex.lib.version,
                 "layout": ex.kv_layout(), "pid": os.getpid(), "info": ex.info}
        try:
            ready["uuid"] = ex.device_uuid()
        except trtd.TrtdError as e:
            ready["uuid_error"] = str(e)
        send(ready)

        def release(rids):
            done = []
            for rid in rids:
                path = pinned.pop(rid, None)
                ex.export_release(rid)
                done.append(rid)
                if path and os.path.exists(path):
                    os.remove(path)
            return done

        while True:
            try:
                cmd = cmd_in.readline(timeout=24 * 3600)
            except EOFError:
                say("parent closed the pipe: releasing and exiting")
                release(list(pinned))
                return 0
            if cmd["cmd"] == "export":
                results = []
                for job in cmd["jobs"]:
                    results.append(_export_job(ex, job, pinned))
                send({"jobs": results})
            elif cmd["cmd"] == "release":
                done = release(cmd["rids"])
                idle, st = ex.wait_idle(5.0) if not pinned else (False, ex.stats())
                send({"released": done, "idle": idle, "stats": st})
            elif cmd["cmd"] == "quit":
                release(list(pinned))
                idle, st = ex.wait_idle(5.0)
                send({"released": True, "idle": idle, "stats": st})
                return 0
            else:
                send({"fatal": f"unknown command {cmd!r}"})
    except Exception:  # noqa: BLE001
        tb = traceback.format_exc()
        say(tb)
        try:
            send({"fatal": tb.strip().splitlines()[-1], "traceback": tb})
        except Exception:  # noqa: BLE001
            pass
        return 1
    finally:
        for path in pinned.values():
            if path and os.path.exists(path):
                os.remove(path)
        if ex is not None:
            ex.close()


def _export_job(ex, job, pinned):
    s = job.get("sampling", {})
    r = {"name": job["name"]}
    t0 = time.perf_counter()
    rid = ex.enqueue(job["prompt"], job.get("max_new", 1), type=trtd.CONTEXT_ONLY, **s)
    res = ex.drain([rid])[rid]
    r.update(rid=rid, t_context_s=time.perf_counter() - t0, first_token=res.tokens[0] if res.tokens else None,
             n_tokens=len(res.tokens), finish=res.finish_name,
             error=(f"{trtd.STATUS_NAMES.get(res.error_status)}: {res.error_message}" if res.error_status else None))
    if res.finish_reason not in (trtd.FINISH_LENGTH, trtd.FINISH_END_ID, trtd.FINISH_STOP_TOKEN):
        return r
    pinned[rid] = None
    r["info"] = ex.export_info(rid)
    r["context_phase_state_bytes"] = len(ex.context_phase_state(rid))
    segs = ex.export_segments(rid)
    r["segments"] = len(segs)
    r["segment_kinds"] = sorted({trtd.MEMORY_NAMES.get(x["memory_kind"], str(x["memory_kind"])) for x in segs})
    r["segment_sizes_ok"] = all(x["size"] == ex.kv_layout()["bytes_per_block"] for x in segs)
    if job.get("host_copy"):
        path = os.path.join(shm_dir(), f"trtd-kv-{os.getpid()}-{rid}.bin")
        mm = np.memmap(path, dtype=np.uint8, mode="w+", shape=(r["info"]["bytes"],))
        t1 = time.perf_counter()
        ex.export_copy(rid, out=mm)
        r["t_copy_s"] = time.perf_counter() - t1
        mm.flush()
        pinned[rid] = path
        r["file"] = path
        if all(x["memory_kind"] in (trtd.MEMORY_HOST, trtd.MEMORY_HOST_PINNED) for x in segs):
            r["segments_match_copy"] = bool(np.array_equal(ex.read_host_segments(segs), mm))
        else:
            r["segments_match_copy"] = None
        del mm
    if job.get("device"):
        try:
            t1 = time.perf_counter()
            r["desc"] = ex.export_device(rid).hex()
            r["t_export_device_s"] = time.perf_counter() - t1
        except trtd.TrtdError as e:
            r["desc"] = None
            r["desc_error"] = str(e)
            r["desc_unsupported"] = e.status == trtd.UNSUPPORTED
    return r


def add_exporter_args(ap):
    ap.add_argument("--role", default="main", choices=["main", "exporter"], help=an_internal())
    ap.add_argument("--model", help=an_internal())
    ap.add_argument("--cmd-fd", type=int, help=an_internal())
    ap.add_argument("--msg-fd", type=int, help=an_internal())
    ap.add_argument("--config-json", default="{}", help=an_internal())


def an_internal():
    import argparse
    return argparse.SUPPRESS


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------

def table(rows, headers):
    rows = [[str(c) for c in r] for r in rows]
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w[i]) for i, h in enumerate(headers))
    out = [line, "  ".join("-" * x for x in w)]
    for r in rows:
        out.append("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))
    return "\n".join(out)


def json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def write_json(path, obj):
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=json_default)
    os.replace(tmp, path)


def env_info():
    info = {"host": os.uname().nodename, "python": sys.version.split()[0], "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        import torch
        import transformers
        info["torch"] = torch.__version__
        info["transformers"] = transformers.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception as e:  # noqa: BLE001
        info["torch_error"] = str(e)
    return info
