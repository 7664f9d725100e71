// mini_json.h: a small JSON reader for the engine's config.json (no dependency, C++17).
// Only what the shim needs: parse a document, then walk objects by key. Errors throw std::runtime_error.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace trtd_shim::json
{

struct Value
{
    enum class Kind
    {
        Null,
        Bool,
        Number,
        String,
        Array,
        Object
    };
    Kind kind = Kind::Null;
    bool boolean = false;
    double number = 0;
    std::string string;
    std::vector<Value> array;
    std::map<std::string, Value> object;

    // Member lookup; nullptr when this is not an object or the key is absent.
    [[nodiscard]] Value const* get(std::string const& key) const;
    // Follows a path of keys ("build_config", "plugin_config", ...); nullptr if any step is missing.
    [[nodiscard]] Value const* path(std::initializer_list<char const*> keys) const;
    [[nodiscard]] bool isNumber() const { return kind == Kind::Number; }
    [[nodiscard]] bool isString() const { return kind == Kind::String; }
};

// Parses a whole document (trailing whitespace allowed, nothing else). Throws std::runtime_error with the offset.
Value parse(std::string const& text);

} // namespace trtd_shim::json
