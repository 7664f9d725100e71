// context_phase_blob.h: the bytes the shim hands out as a context-only request's opaque state
// (trtd_executor_context_phase_state) and takes back in trtd_context_phase_params.opaque_state.
// It carries TensorRT-LLM's ContextPhaseParams: first generated tokens, the context executor's request id,
// and ContextPhaseParams::getSerializedState() (the DataTransceiverState: where and how the generation side
// fetches the KV through the cache transceiver). Pure C++17; tested without TensorRT-LLM.
//
// Wire format, little-endian, version 1:
//   magic "TRTDCPS1" (8 bytes) | u32 version | u32 num_first_tokens | i32 first_tokens[num_first_tokens]
//   | u64 context_request_id | u32 fingerprint_len | fingerprint bytes | u64 state_len | state bytes
// Nothing may follow. The fingerprint is the model fingerprint of the context engine; the generation side
// refuses state from another model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace trtd_shim
{

inline constexpr uint32_t kContextPhaseBlobVersion = 1;
inline constexpr uint32_t kMaxFirstTokens = 64;          // beam 1 gives 1; draft models a few more
inline constexpr uint32_t kMaxFingerprintBytes = 64;
inline constexpr uint64_t kMaxStateBytes = 64ull << 20;  // the transceiver state is a few KiB in practice

struct ContextPhaseBlob
{
    std::vector<int32_t> firstGenTokens;
    uint64_t contextRequestId = 0;
    std::string modelFingerprint;
    std::vector<char> serializedState;
};

std::vector<uint8_t> encodeContextPhaseBlob(ContextPhaseBlob const& blob);

// Strict decode: false (with a reason in error) for a wrong magic or version, truncation, limits exceeded
// or trailing bytes. Never reads past size.
bool decodeContextPhaseBlob(void const* data, size_t size, ContextPhaseBlob& out, std::string& error);

} // namespace trtd_shim
