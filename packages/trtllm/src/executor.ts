// Executor: the koffi binding of trtd_executor.h. Responses reach JS without blocking the event loop and
// without libuv pool threads: the engine thread writes a byte to a socket when output is ready, a net.Socket
// watches the other end, and each 'data' event drains the results with a non-blocking sync call.
import { Socket } from "node:net";
import {
  ExecutorClosedError,
  InternalError,
  InvalidArgumentError,
  NativeStatus,
  RequestFailedError,
  errorFromStatus,
  type ExecutorError,
} from "./errors.js";
import { ConstraintDriver } from "./constraint.js";
import { KvExport, KvImport, type KvOwner } from "./kv.js";
import {
  decodeResponse,
  decodeTokenLogprobs,
  FINISH_REASONS,
  KV_EVENT_SIZE,
  KV_EVENT_TYPES,
  loadLibrary,
  MEMORY_KINDS,
  REQUEST_TYPES,
  resolveLibraryPath,
  RESPONSE_SIZE,
  TOKEN_LOGPROBS_SIZE,
  type NativeLib,
} from "./native.js";
import { KV_DTYPES } from "@trtd/model";
import { GenerationStream } from "./stream.js";
import type { ExecutorKvLayout, ExecutorName, ExecutorOptions, ExecutorStats, GenerateOptions, GenerateRequest, KvEvents, ModelInfo } from "./types.js";

/** config device_id when deviceId is unset and the implementation is chosen by name. */
const DEFAULT_DEVICE: Record<ExecutorName, number> = { reference: -1, cuda: 0 };
/** trtd_executor_device_uuid needs at least 64 bytes. */
const DEVICE_UUID_BYTES = 128;
const MAX_RESPONSES = 256;
const MAX_TOKENS = 16384;

function int32Array(name: string, values: readonly number[] | Int32Array): Int32Array {
  if (values instanceof Int32Array) return values;
  if (!Array.isArray(values)) throw new InvalidArgumentError(`${name} must be an array of token ids`);
  const out = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) {
      throw new InvalidArgumentError(`${name}[${i}] is not a token id: ${String(v)}`);
    }
    out[i] = v;
  }
  return out;
}

function boolOption(name: string, v: boolean | undefined, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== "boolean") throw new InvalidArgumentError(`${name} must be a boolean, got ${String(v)}`);
  return v;
}

function intOption(name: string, v: number | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v)) throw new InvalidArgumentError(`${name} must be an integer, got ${String(v)}`);
  return v;
}

/** An integer that fits int32_t; the range beyond that (e.g. >= 0) is the library's to check. */
function int32Option(name: string, v: number | undefined, fallback: number): number {
  const n = intOption(name, v, fallback);
  if (n < -0x80000000 || n > 0x7fffffff) throw new InvalidArgumentError(`${name} must fit a 32-bit integer, got ${n}`);
  return n;
}

function numberOption(name: string, v: number | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== "number") throw new InvalidArgumentError(`${name} must be a number, got ${String(v)}`);
  return v;
}

export class Executor implements KvOwner {
  readonly native: NativeLib;
  readonly model: ModelInfo;
  readonly modelDir: string;
  #ex: bigint | undefined;
  #socket: Socket;
  #streams = new Map<number, GenerationStream>();
  #signals = new Map<number, () => void>();
  #constraints = new Map<number, ConstraintDriver>();
  #respBuf = Buffer.alloc(MAX_RESPONSES * RESPONSE_SIZE);
  #tokBuf = new Int32Array(MAX_TOKENS);
  /** trtd_token_logprobs parallel to #tokBuf; allocated when the first request asks for logprobs. */
  #logprobBuf: Buffer | null = null;
  /** Requests that asked for logprobs (their chunks carry them). */
  #withLogprobs = new Set<number>();
  #nOut = new Int32Array(1);
  #layout: ExecutorKvLayout | undefined;
  #closing: Promise<void> | undefined;
  /** Set by close(): the error of every stream it ends, whether the engine's final arrives before destroy or not. */
  #closedError: ExecutorClosedError | undefined;

  private constructor(native: NativeLib, ex: bigint, modelDir: string) {
    this.native = native;
    this.#ex = ex;
    this.modelDir = modelDir;
    const info: Record<string, unknown> = {};
    this.check(native.modelInfo(ex, info));
    const eos = info.eos_token_ids as number[];
    this.model = {
      vocabSize: info.vocab_size as number,
      numLayers: info.num_layers as number,
      hiddenSize: info.hidden_size as number,
      numHeads: info.num_heads as number,
      numKvHeads: info.num_kv_heads as number,
      headDim: info.head_dim as number,
      maxContextLength: info.max_context_length as number,
      eosTokenIds: Array.from(eos).slice(0, info.num_eos_token_ids as number),
      fingerprint: info.fingerprint as string,
    };
    const fd = new Int32Array(1);
    this.check(native.notifyFd(ex, true, fd)); // we own the fd now; the socket closes it
    this.#socket = new Socket({ fd: fd[0], readable: true, writable: false });
    this.#socket.on("data", () => this.#drain());
    this.#socket.on("error", () => {}); // only on teardown; nothing to recover
    this.#socket.unref(); // referenced only while requests are in flight
  }

  /**
   * Loads the model in modelDir and starts the engine. Synchronous: loading reads the weights.
   * @throws ModelLoadError, InvalidArgumentError (options), LibraryLoadError, AbiMismatchError
   */
  static open(modelDir: string, options: ExecutorOptions = {}): Executor {
    if (typeof modelDir !== "string" || modelDir === "") throw new InvalidArgumentError("modelDir must be a non-empty string");
    const native = loadLibrary(resolveLibraryPath(options.library, options.executor));
    const cfg = native.defaultConfig();
    cfg.max_batch_size = intOption("maxBatchSize", options.maxBatchSize, cfg.max_batch_size);
    cfg.max_tokens_per_iteration = intOption("maxTokensPerIteration", options.maxTokensPerIteration, cfg.max_tokens_per_iteration);
    cfg.kv_tokens_per_block = intOption("kvTokensPerBlock", options.kvTokensPerBlock, cfg.kv_tokens_per_block);
    cfg.kv_block_count = intOption("kvBlockCount", options.kvBlockCount, cfg.kv_block_count);
    cfg.kv_memory_bytes = intOption("kvMemoryBytes", options.kvMemoryBytes, Number(cfg.kv_memory_bytes));
    cfg.num_threads = intOption("threads", options.threads, cfg.num_threads);
    cfg.max_context_length = intOption("maxContextLength", options.maxContextLength, cfg.max_context_length);
    cfg.max_queued_requests = intOption("maxQueuedRequests", options.maxQueuedRequests, cfg.max_queued_requests);
    cfg.enable_prefix_cache = boolOption("prefixCache", options.prefixCache, cfg.enable_prefix_cache);
    cfg.kv_host_cache_bytes = intOption("kvHostCacheBytes", options.kvHostCacheBytes, Number(cfg.kv_host_cache_bytes));
    cfg.device_id = intOption("deviceId", options.deviceId, options.executor ? DEFAULT_DEVICE[options.executor] : cfg.device_id);
    for (const [k, v] of Object.entries(cfg)) {
      if (Number(v) > 0x7fffffff && k !== "kv_memory_bytes" && k !== "kv_host_cache_bytes") throw new InvalidArgumentError(`option ${k} is too large`);
    }
    const out: unknown[] = [null];
    const status = native.create(modelDir, cfg, out);
    if (status !== 0) throw errorFromStatus(status, native.lastError());
    const handle = out[0] as bigint;
    try {
      return new Executor(native, handle, modelDir);
    } catch (err) {
      native.destroy(handle); // e.g. an implementation without a readiness fd: nothing may leak
      throw err;
    }
  }

  /** The library's implementation name and version. */
  get version(): string {
    return this.native.version;
  }

  /**
   * Identity of the device that holds the KV pool ("GPU-" + UUID for the CUDA executor), so that a prefill and a
   * decode process can tell whether they share a GPU; undefined for a host-memory executor (the reference).
   */
  deviceUuid(): string | undefined {
    const buf = Buffer.alloc(DEVICE_UUID_BYTES);
    const status = this.native.deviceUuid(this.handle(), buf, buf.byteLength);
    if (status === NativeStatus.UNSUPPORTED) return undefined;
    this.check(status);
    const end = buf.indexOf(0);
    return buf.toString("utf8", 0, end < 0 ? buf.byteLength : end);
  }

  get closed(): boolean {
    return this.#ex === undefined;
  }

  /** @internal KvOwner: the native handle, or ExecutorClosedError. */
  handle(): bigint {
    if (this.#ex === undefined || this.#closing) throw new ExecutorClosedError("the executor is closed");
    return this.#ex;
  }

  /** @internal KvOwner: throws the typed error for a native status. */
  check(status: number): void {
    if (status !== 0) throw errorFromStatus(status, this.native.lastError());
  }

  kvLayout(): ExecutorKvLayout {
    if (this.#layout) return { ...this.#layout };
    const l: Record<string, unknown> = {};
    this.check(this.native.kvLayout(this.handle(), l));
    this.#layout = {
      fingerprint: l.fingerprint as string,
      numLayers: l.num_layers as number,
      numKvHeads: l.num_kv_heads as number,
      headDim: l.head_dim as number,
      dtype: KV_DTYPES[l.dtype as number] ?? "float32",
      tokensPerBlock: l.tokens_per_block as number,
      bytesPerBlock: Number(l.bytes_per_block),
      memoryKind: MEMORY_KINDS[l.memory_kind as number] ?? "host",
    };
    return { ...this.#layout };
  }

  /**
   * Enqueues a request and returns its stream of chunks (the last one final, with finishReason). Throws a typed
   * error synchronously when the request is refused (InvalidArgumentError, KvCapacityError, NotFoundError for
   * a consumed import, QueueFullError, ExecutorClosedError). Breaking out of the iteration cancels the request.
   */
  generate(request: GenerateRequest, options: GenerateOptions = {}): GenerationStream {
    const ex = this.handle();
    if (typeof request !== "object" || request === null) throw new InvalidArgumentError("request must be an object");
    const type = request.type ?? "context_and_generation";
    if (!(type in REQUEST_TYPES)) throw new InvalidArgumentError(`unknown request type ${String(type)}`);
    const prompt = int32Array("prompt", request.prompt);
    const stop = int32Array("stopTokenIds", request.stopTokenIds ?? []);
    const s = request.sampling ?? {};
    let seed: bigint;
    try {
      seed = BigInt(s.seed ?? 0);
    } catch (cause) {
      throw new InvalidArgumentError(`sampling.seed must be an integer, got ${String(s.seed)}`, { cause });
    }
    if (seed < 0n || seed >= 1n << 64n) throw new InvalidArgumentError("sampling.seed must be in [0, 2^64)");
    const driver = request.constraint === undefined ? undefined : this.#constraintDriver(request.constraint);
    let contextPhase: Record<string, unknown> | null = null;
    const imp = request.contextPhase?.kvImport;
    if (request.contextPhase) {
      const cp = request.contextPhase;
      if (imp && !(imp instanceof KvImport)) throw new InvalidArgumentError("contextPhase.kvImport must come from reserveKvImport");
      if (imp && !imp.belongsTo(this)) throw new InvalidArgumentError("contextPhase.kvImport belongs to another executor");
      const opaque = cp.opaqueState ?? null;
      contextPhase = {
        opaque_state: opaque,
        opaque_state_size: opaque ? opaque.byteLength : 0,
        kv_import_id: imp ? imp.id : 0,
        first_token: intOption("contextPhase.firstToken", cp.firstToken, -1),
      };
    }
    const bias = Object.entries(request.logitBias ?? {});
    const biasIds = new Int32Array(bias.length);
    const biasValues = new Float32Array(bias.length);
    bias.forEach(([id, v], i) => {
      const n = Number(id);
      if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) throw new InvalidArgumentError(`logitBias key ${id} is not a token id`);
      if (typeof v !== "number") throw new InvalidArgumentError(`logitBias[${id}] must be a number`);
      biasIds[i] = n;
      biasValues[i] = v;
    });
    if (request.logprobs !== undefined && typeof request.logprobs !== "boolean") throw new InvalidArgumentError("logprobs must be a boolean");
    const native = {
      prompt,
      stop_token_ids: stop.length ? stop : null,
      context_phase: contextPhase,
      sampling: {
        seed,
        temperature: numberOption("sampling.temperature", s.temperature, 0),
        top_p: numberOption("sampling.topP", s.topP, 1),
        top_k: intOption("sampling.topK", s.topK, 0),
        repetition_penalty: numberOption("sampling.repetitionPenalty", s.repetitionPenalty, 1),
        frequency_penalty: numberOption("sampling.frequencyPenalty", s.frequencyPenalty, 0),
        presence_penalty: numberOption("sampling.presencePenalty", s.presencePenalty, 0),
        min_p: numberOption("sampling.minP", s.minP, 0),
      },
      prompt_len: prompt.length,
      max_new_tokens: intOption("maxNewTokens", request.maxNewTokens, 0),
      end_id: intOption("endId", request.endId, -1),
      num_stop_token_ids: stop.length,
      type: REQUEST_TYPES[type],
      generated_offset: int32Option("generatedOffset", request.generatedOffset, 0),
      constrained: driver !== undefined,
      logit_bias_ids: bias.length ? biasIds : null,
      logit_bias_values: bias.length ? biasValues : null,
      num_logit_bias: bias.length,
      min_new_tokens: int32Option("minNewTokens", request.minNewTokens, 0),
      num_top_logprobs: int32Option("topLogprobs", request.topLogprobs, 0),
      logprobs: request.logprobs === true,
    };
    const idOut: unknown[] = [0];
    this.check(this.native.enqueue(ex, native, idOut));
    const id = Number(idOut[0]);
    imp?.markConsumed();
    if (native.logprobs) {
      this.#logprobBuf ??= Buffer.alloc(MAX_TOKENS * TOKEN_LOGPROBS_SIZE);
      this.#withLogprobs.add(id);
    }
    const stream = new GenerationStream(id, () => this.cancel(id));
    this.#streams.set(id, stream);
    if (driver) {
      this.#constraints.set(id, driver);
      driver.start(id, type === "generation_only" ? (contextPhase?.first_token as number) : undefined);
    }
    this.#socket.ref();
    if (options.signal) {
      // An already-aborted signal ends the stream like an abort during the run: final chunk "cancelled".
      const signal = options.signal;
      const onAbort = () => this.cancel(id);
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener("abort", onAbort, { once: true });
        this.#signals.set(id, () => signal.removeEventListener("abort", onAbort));
      }
    }
    return stream;
  }

  #constraintDriver(constraint: GenerateRequest["constraint"] & object): ConstraintDriver {
    return new ConstraintDriver(
      {
        setTokenMask: (id, mask) => (this.#ex === undefined ? NativeStatus.NOT_FOUND : this.native.setTokenMask(this.#ex, id, mask, mask.length)),
        cancel: (id) => this.cancel(id),
        statusError: (status) => errorFromStatus(status, this.native.lastError()),
      },
      constraint,
      this.model.vocabSize,
    );
  }

  /** Asks the engine to stop a request; returns false when it is unknown or already finished. */
  cancel(requestId: number): boolean {
    if (this.#ex === undefined) return false;
    return this.native.cancel(this.#ex, requestId) === 0;
  }

  /**
   * Drains the prefix cache's events (ABI 4): the hashes of blocks stored in and evicted from the cache since the
   * last drain, oldest first (`prefixBlockHashes` of @trtd/model computes the same keys from token ids). `lost` is true when the
   * executor's queue overflowed since the last kvCacheSnapshot(): rebuild from a snapshot then.
   * @throws UnsupportedError (an implementation without a prefix cache)
   */
  kvEvents(): KvEvents {
    const ex = this.handle();
    const max = 4096;
    const buf = Buffer.alloc(max * KV_EVENT_SIZE);
    const n = new Int32Array(1);
    const lostOut = new Uint8Array(1);
    const out: KvEvents = { events: [], lost: false };
    for (;;) {
      this.check(this.native.kvEvents(ex, buf, max, n, lostOut));
      out.lost ||= lostOut[0] !== 0;
      for (let i = 0; i < n[0]!; i++) {
        const type = KV_EVENT_TYPES[buf.readInt32LE(i * KV_EVENT_SIZE + 8)];
        if (type === undefined) throw new InternalError(`unknown KV event type ${buf.readInt32LE(i * KV_EVENT_SIZE + 8)}`);
        out.events.push({ type, hash: buf.readBigUInt64LE(i * KV_EVENT_SIZE) });
      }
      if (n[0]! < max) return out;
    }
  }

  /**
   * The hashes of every block in the prefix cache (ABI 4). Taking it drops the queued events, which it supersedes:
   * kvEvents() continues from here.
   * @throws UnsupportedError (an implementation without a prefix cache)
   */
  kvCacheSnapshot(): bigint[] {
    const ex = this.handle();
    const n = new Int32Array(1);
    for (;;) {
      const status = this.native.kvCacheSnapshot(ex, null, 0, n);
      if (status !== 0 && status !== NativeStatus.BUFFER_TOO_SMALL) this.check(status);
      const buf = new BigUint64Array(Math.max(1, n[0]!));
      const s2 = this.native.kvCacheSnapshot(ex, buf, buf.length, n);
      if (s2 === NativeStatus.BUFFER_TOO_SMALL) continue; // the cache grew in between: ask again
      this.check(s2);
      return Array.from(buf.subarray(0, n[0]!));
    }
  }

  stats(): ExecutorStats {
    const s: Record<string, unknown> = {};
    this.check(this.native.stats(this.handle(), s));
    return {
      activeRequests: s.active_requests as number,
      queuedRequests: s.queued_requests as number,
      kvBlocksUsed: s.kv_blocks_used as number,
      kvBlocksFree: s.kv_blocks_free as number,
      kvBlocksTotal: s.kv_blocks_total as number,
      kvBlocksCached: s.kv_blocks_cached as number,
      prefixCacheHitTokens: Number(s.prefix_cache_hit_tokens),
      prefixCacheMissTokens: Number(s.prefix_cache_miss_tokens),
      prefixCacheEvictedBlocks: Number(s.prefix_cache_evicted_blocks),
      kvHostBlocksTotal: s.kv_host_blocks_total as number,
      kvHostBlocksHeld: s.kv_host_blocks_held as number,
      kvHostStoredBlocks: Number(s.kv_host_stored_blocks),
      kvHostHitBlocks: Number(s.kv_host_hit_blocks),
      kvHostEvictedBlocks: Number(s.kv_host_evicted_blocks),
      pinnedExports: s.pinned_exports as number,
      pendingImports: s.pending_imports as number,
      iterations: Number(s.iterations),
      generatedTokens: Number(s.generated_tokens),
      promptTokens: Number(s.prompt_tokens),
    };
  }

  /**
   * The pinned KV of a finished context-only request. The caller owns it: call release() exactly when the KV
   * is no longer needed (transfer acknowledged or offer expired).
   * @throws NotFoundError, InvalidStateError (not finished / not context-only), EngineNativeTransferError
   */
  exportKv(requestId: number): KvExport {
    const info: Record<string, unknown> = {};
    this.check(this.native.kvExportInfo(this.handle(), requestId, info));
    return new KvExport(this, requestId, info as { num_tokens: number; num_blocks: number; bytes: number });
  }

  /** The opaque engine state of a finished context-only request (empty for the reference executor). */
  contextPhaseState(requestId: number): Uint8Array {
    const ex = this.handle();
    const size: unknown[] = [0];
    this.check(this.native.contextPhaseState(ex, requestId, null, 0, size));
    const buf = new Uint8Array(Number(size[0]));
    if (buf.byteLength) this.check(this.native.contextPhaseState(ex, requestId, buf, buf.byteLength, size));
    return buf;
  }

  /**
   * Drops the context phase state of a finished context-only request on an engine that moves KV itself (the
   * TensorRT-LLM shim; TensorRT-LLM frees the KV after the pull or its transfer timeout): the release path when
   * exportKv answers EngineNativeTransferError.
   * @throws NotFoundError
   */
  releaseContextPhaseState(requestId: number): void {
    this.check(this.native.kvExportRelease(this.handle(), requestId));
  }

  /**
   * Reserves KV blocks for numTokens tokens, to be filled and then consumed by a generation_only request
   * (contextPhase.kvImport). Call abort() if it will not be used.
   * @throws InvalidArgumentError, KvCapacityError (never fits), KvExhaustedError (retry later)
   */
  reserveKvImport(numTokens: number): KvImport {
    const n = intOption("numTokens", numTokens, 0);
    const idOut: unknown[] = [0];
    this.check(this.native.kvImportReserve(this.handle(), n, idOut));
    const layout = this.kvLayout();
    return new KvImport(this, Number(idOut[0]), n, Math.ceil(n / layout.tokensPerBlock), layout.bytesPerBlock);
  }

  /** [debug] Logits of every position of a forward pass over tokens: row-major [tokens.length, vocabSize]. */
  computeLogits(tokens: readonly number[] | Int32Array): Float32Array {
    const t = int32Array("tokens", tokens);
    const out = new Float32Array(t.length * this.model.vocabSize);
    this.check(this.native.computeLogits(this.handle(), t, t.length, out, out.length));
    return out;
  }

  /**
   * Stops the engine and frees all native memory. Streams still open end with a final "cancelled" chunk
   * carrying an ExecutorClosedError; KV export/import handles become invalid (release them first).
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const ex = this.#ex;
      if (ex === undefined) return;
      const err = (this.#closedError = new ExecutorClosedError("the executor was closed"));
      for (const id of this.#streams.keys()) this.native.cancel(ex, id);
      this.#drain();
      this.native.destroy(ex);
      this.#ex = undefined;
      for (const [id, stream] of this.#streams) {
        stream.push({ requestId: id, tokens: [], final: true, finishReason: "cancelled", error: err });
      }
      this.#streams.clear();
      for (const d of this.#constraints.values()) d.onTokens([], true);
      this.#constraints.clear();
      for (const off of this.#signals.values()) off();
      this.#signals.clear();
      this.#socket.destroy();
    })();
    return this.#closing;
  }

  #drain(): void {
    const ex = this.#ex;
    if (ex === undefined) return;
    for (;;) {
      const lp = this.#logprobBuf;
      const status = lp
        ? this.native.awaitResponsesExt(ex, 0, this.#respBuf, MAX_RESPONSES, this.#tokBuf, MAX_TOKENS, lp, this.#nOut)
        : this.native.awaitResponses(ex, 0, this.#respBuf, MAX_RESPONSES, this.#tokBuf, MAX_TOKENS, this.#nOut);
      if (status !== 0) throw errorFromStatus(status, this.native.lastError());
      const n = this.#nOut[0];
      if (n === 0) break;
      for (let i = 0; i < n; i++) {
        const r = decodeResponse(this.#respBuf, i);
        const id = Number(r.request_id);
        const tokens = Array.from(this.#tokBuf.subarray(r.token_offset, r.token_offset + r.num_tokens));
        const stream = this.#streams.get(id);
        if (!stream) continue; // a request whose stream was dropped by close()
        const driver = this.#constraints.get(id);
        driver?.onTokens(tokens, r.is_final);
        const logprobs =
          lp && this.#withLogprobs.has(id) ? { logprobs: tokens.map((_, k) => decodeTokenLogprobs(lp, r.token_offset + k)) } : {};
        if (!r.is_final) {
          stream.push({ requestId: id, tokens, final: false, ...logprobs });
          continue;
        }
        this.#constraints.delete(id);
        let finishReason = FINISH_REASONS[r.finish_reason] ?? "error";
        let error: ExecutorError | undefined;
        if (driver?.error && finishReason === "cancelled") {
          finishReason = "error"; // cancelled by its constraint (a rejected token, a failed mask)
          error = driver.error;
        } else if (finishReason === "error") {
          error = new RequestFailedError(r.error_message || "the request failed in the engine", {
            cause: errorFromStatus(r.error_status, r.error_message),
            status: r.error_status,
          });
        } else if (finishReason === "cancelled" && this.#closedError) {
          error = this.#closedError; // cancelled by close()
        }
        stream.push({ requestId: id, tokens, final: true, finishReason, ...logprobs, ...(error ? { error } : {}) });
        this.#streams.delete(id);
        this.#withLogprobs.delete(id);
        this.#signals.get(id)?.();
        this.#signals.delete(id);
      }
      if (n < MAX_RESPONSES) break;
    }
    if (this.#streams.size === 0) this.#socket.unref();
  }
}
