#include "mini_json.h"

#include <cstdlib>
#include <stdexcept>

namespace trtd_shim::json
{
namespace
{

constexpr int kMaxDepth = 64;

class Parser
{
public:
    explicit Parser(std::string const& text)
        : mText(text)
    {
    }

    Value document()
    {
        Value v = value(0);
        skipSpace();
        if (mPos != mText.size())
        {
            fail("trailing characters");
        }
        return v;
    }

private:
    [[noreturn]] void fail(char const* what) const
    {
        throw std::runtime_error(std::string("JSON: ") + what + " at offset " + std::to_string(mPos));
    }

    void skipSpace()
    {
        while (mPos < mText.size()
            && (mText[mPos] == ' ' || mText[mPos] == '\n' || mText[mPos] == '\r' || mText[mPos] == '\t'))
        {
            ++mPos;
        }
    }

    bool consume(char const* literal)
    {
        std::string const lit(literal);
        if (mText.compare(mPos, lit.size(), lit) == 0)
        {
            mPos += lit.size();
            return true;
        }
        return false;
    }

    Value value(int depth)
    {
        if (depth > kMaxDepth)
        {
            fail("nesting too deep");
        }
        skipSpace();
        if (mPos >= mText.size())
        {
            fail("unexpected end");
        }
        Value v;
        char const c = mText[mPos];
        if (c == '{')
        {
            v.kind = Value::Kind::Object;
            ++mPos;
            skipSpace();
            if (mPos < mText.size() && mText[mPos] == '}')
            {
                ++mPos;
                return v;
            }
            for (;;)
            {
                skipSpace();
                if (mPos >= mText.size() || mText[mPos] != '"')
                {
                    fail("expected a key");
                }
                std::string key = string();
                skipSpace();
                if (mPos >= mText.size() || mText[mPos] != ':')
                {
                    fail("expected ':'");
                }
                ++mPos;
                v.object[key] = value(depth + 1);
                skipSpace();
                if (mPos < mText.size() && mText[mPos] == ',')
                {
                    ++mPos;
                    continue;
                }
                if (mPos < mText.size() && mText[mPos] == '}')
                {
                    ++mPos;
                    return v;
                }
                fail("expected ',' or '}'");
            }
        }
        if (c == '[')
        {
            v.kind = Value::Kind::Array;
            ++mPos;
            skipSpace();
            if (mPos < mText.size() && mText[mPos] == ']')
            {
                ++mPos;
                return v;
            }
            for (;;)
            {
                v.array.push_back(value(depth + 1));
                skipSpace();
                if (mPos < mText.size() && mText[mPos] == ',')
                {
                    ++mPos;
                    continue;
                }
                if (mPos < mText.size() && mText[mPos] == ']')
                {
                    ++mPos;
                    return v;
                }
                fail("expected ',' or ']'");
            }
        }
        if (c == '"')
        {
            v.kind = Value::Kind::String;
            v.string = string();
            return v;
        }
        if (consume("true"))
        {
            v.kind = Value::Kind::Bool;
            v.boolean = true;
            return v;
        }
        if (consume("false"))
        {
            v.kind = Value::Kind::Bool;
            return v;
        }
        if (consume("null"))
        {
            return v;
        }
        // Python's json.dump writes these for non-finite floats; accept them as numbers.
        if (consume("NaN") || consume("Infinity") || consume("-Infinity"))
        {
            v.kind = Value::Kind::Number;
            return v;
        }
        if (c == '-' || (c >= '0' && c <= '9'))
        {
            char const* begin = mText.c_str() + mPos;
            char* end = nullptr;
            v.kind = Value::Kind::Number;
            v.number = std::strtod(begin, &end);
            if (end == begin)
            {
                fail("bad number");
            }
            mPos += static_cast<size_t>(end - begin);
            return v;
        }
        fail("unexpected character");
    }

    std::string string()
    {
        ++mPos; // opening quote
        std::string out;
        while (mPos < mText.size())
        {
            char const c = mText[mPos++];
            if (c == '"')
            {
                return out;
            }
            if (c != '\\')
            {
                out.push_back(c);
                continue;
            }
            if (mPos >= mText.size())
            {
                break;
            }
            char const e = mText[mPos++];
            switch (e)
            {
            case '"': out.push_back('"'); break;
            case '\\': out.push_back('\\'); break;
            case '/': out.push_back('/'); break;
            case 'b': out.push_back('\b'); break;
            case 'f': out.push_back('\f'); break;
            case 'n': out.push_back('\n'); break;
            case 'r': out.push_back('\r'); break;
            case 't': out.push_back('\t'); break;
            case 'u':
            {
                // Keys and values the shim reads are ASCII; other code points are kept as '?'.
                if (mPos + 4 > mText.size())
                {
                    fail("bad \\u escape");
                }
                unsigned code = std::stoul(mText.substr(mPos, 4), nullptr, 16);
                mPos += 4;
                out.push_back(code < 0x80 ? static_cast<char>(code) : '?');
                break;
            }
            default: fail("bad escape");
            }
        }
        fail("unterminated string");
    }

    std::string const& mText;
    size_t mPos = 0;
};

} // namespace

Value const* Value::get(std::string const& key) const
{
    if (kind != Kind::Object)
    {
        return nullptr;
    }
    auto it = object.find(key);
    return it == object.end() ? nullptr : &it->second;
}

Value const* Value::path(std::initializer_list<char const*> keys) const
{
    Value const* v = this;
    for (char const* k : keys)
    {
        v = v->get(k);
        if (v == nullptr)
        {
            return nullptr;
        }
    }
    return v;
}

Value parse(std::string const& text)
{
    return Parser(text).document();
}

} // namespace trtd_shim::json
