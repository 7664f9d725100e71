// A small JSON reader for config.json and safetensors headers (no external dependencies).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace trtd {

struct Json {
    enum class Type { Null, Bool, Number, String, Array, Object };
    Type type = Type::Null;
    bool boolean = false;
    double number = 0;
    std::string string;
    std::vector<Json> array;
    std::map<std::string, Json> object;

    bool is_null() const { return type == Type::Null; }
    bool is_number() const { return type == Type::Number; }
    bool is_string() const { return type == Type::String; }
    bool is_array() const { return type == Type::Array; }
    bool is_object() const { return type == Type::Object; }
    // Member lookup; nullptr when absent or when this is not an object.
    const Json * get(const std::string & key) const;
};

// Parses text; throws std::runtime_error with the byte offset on malformed input.
Json parse_json(const std::string & text);

}  // namespace trtd
