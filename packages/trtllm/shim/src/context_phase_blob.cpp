#include "context_phase_blob.h"

#include <cstring>

namespace trtd_shim
{
namespace
{

constexpr char kMagic[8] = {'T', 'R', 'T', 'D', 'C', 'P', 'S', '1'};

// Writes into a buffer sized up front (GCC 12 warns falsely on growing vector inserts at -O2).
class Writer
{
public:
    explicit Writer(size_t size)
        : mOut(size)
    {
    }

    template <typename T>
    void put(T value)
    {
        for (size_t i = 0; i < sizeof(T); ++i)
        {
            mOut[mPos++] = static_cast<uint8_t>((static_cast<uint64_t>(value) >> (8 * i)) & 0xff);
        }
    }

    void bytes(void const* data, size_t n)
    {
        if (n > 0)
        {
            std::memcpy(mOut.data() + mPos, data, n);
            mPos += n;
        }
    }

    std::vector<uint8_t> take() { return std::move(mOut); }

private:
    std::vector<uint8_t> mOut;
    size_t mPos = 0;
};

class Reader
{
public:
    Reader(uint8_t const* data, size_t size)
        : mData(data)
        , mSize(size)
    {
    }

    template <typename T>
    bool get(T& value)
    {
        if (mSize - mPos < sizeof(T))
        {
            return false;
        }
        uint64_t v = 0;
        for (size_t i = 0; i < sizeof(T); ++i)
        {
            v |= static_cast<uint64_t>(mData[mPos + i]) << (8 * i);
        }
        mPos += sizeof(T);
        value = static_cast<T>(v);
        return true;
    }

    bool bytes(void* dst, size_t n)
    {
        if (mSize - mPos < n)
        {
            return false;
        }
        if (n > 0)
        {
            std::memcpy(dst, mData + mPos, n);
        }
        mPos += n;
        return true;
    }

    [[nodiscard]] size_t remaining() const { return mSize - mPos; }

private:
    uint8_t const* mData;
    size_t mSize;
    size_t mPos = 0;
};

} // namespace

std::vector<uint8_t> encodeContextPhaseBlob(ContextPhaseBlob const& blob)
{
    size_t const size = sizeof kMagic + 4 + 4 + 4 * blob.firstGenTokens.size() + 8 + 4 + blob.modelFingerprint.size()
        + 8 + blob.serializedState.size();
    Writer w(size);
    w.bytes(kMagic, sizeof kMagic);
    w.put<uint32_t>(kContextPhaseBlobVersion);
    w.put<uint32_t>(static_cast<uint32_t>(blob.firstGenTokens.size()));
    for (int32_t t : blob.firstGenTokens)
    {
        w.put<uint32_t>(static_cast<uint32_t>(t));
    }
    w.put<uint64_t>(blob.contextRequestId);
    w.put<uint32_t>(static_cast<uint32_t>(blob.modelFingerprint.size()));
    w.bytes(blob.modelFingerprint.data(), blob.modelFingerprint.size());
    w.put<uint64_t>(static_cast<uint64_t>(blob.serializedState.size()));
    w.bytes(blob.serializedState.data(), blob.serializedState.size());
    return w.take();
}

bool decodeContextPhaseBlob(void const* data, size_t size, ContextPhaseBlob& out, std::string& error)
{
    if (data == nullptr)
    {
        error = "context phase state is NULL";
        return false;
    }
    Reader r(static_cast<uint8_t const*>(data), size);
    char magic[8];
    if (!r.bytes(magic, sizeof magic) || std::memcmp(magic, kMagic, sizeof magic) != 0)
    {
        error = "context phase state: not a TensorRT-LLM shim blob (bad magic)";
        return false;
    }
    uint32_t version = 0;
    if (!r.get(version) || version != kContextPhaseBlobVersion)
    {
        error = "context phase state: unsupported version " + std::to_string(version);
        return false;
    }
    ContextPhaseBlob blob;
    uint32_t n = 0;
    if (!r.get(n) || n == 0 || n > kMaxFirstTokens)
    {
        error = "context phase state: bad first-token count";
        return false;
    }
    blob.firstGenTokens.resize(n);
    for (uint32_t i = 0; i < n; ++i)
    {
        uint32_t t = 0;
        if (!r.get(t))
        {
            error = "context phase state: truncated first tokens";
            return false;
        }
        blob.firstGenTokens[i] = static_cast<int32_t>(t);
    }
    uint32_t fpLen = 0;
    if (!r.get(blob.contextRequestId) || !r.get(fpLen) || fpLen > kMaxFingerprintBytes)
    {
        error = "context phase state: truncated header or bad fingerprint length";
        return false;
    }
    blob.modelFingerprint.resize(fpLen);
    uint64_t stateLen = 0;
    if (!r.bytes(blob.modelFingerprint.data(), fpLen) || !r.get(stateLen))
    {
        error = "context phase state: truncated fingerprint";
        return false;
    }
    if (stateLen == 0 || stateLen > kMaxStateBytes || stateLen != r.remaining())
    {
        error = "context phase state: state length " + std::to_string(stateLen) + " does not match the "
            + std::to_string(r.remaining()) + " bytes left";
        return false;
    }
    blob.serializedState.resize(static_cast<size_t>(stateLen));
    r.bytes(blob.serializedState.data(), static_cast<size_t>(stateLen));
    out = std::move(blob);
    return true;
}

} // namespace trtd_shim
