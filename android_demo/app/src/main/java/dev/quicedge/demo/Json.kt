package dev.quicedge.demo

import java.math.BigDecimal

/** Malformed JSON; the message gives the character offset. */
class JsonError(message: String) : IllegalArgumentException(message)

/**
 * A small JSON reader and writer (RFC 8259) for manifest.json, tokenizer.json, checkpoint state and
 * safetensors headers, so the app needs no JSON library and the same code runs on the JVM in the tests.
 *
 * Reading: objects become LinkedHashMap<String, Any?> (file order kept), arrays List<Any?>, integers Long,
 * other numbers Double, plus String, Boolean and null.
 * Writing: [dumps] writes what Python's `json.dumps(value, sort_keys=...)` writes, byte for byte
 * (", " and ": " separators, or "," and ":" when compact, non-ASCII escaped as \uXXXX, floats as Python's repr),
 * because the identity's config string must equal Python's canonical_config (quic_edge/formats/identity.py).
 */
object Json {
    fun parse(text: String): Any? = Parser(text).document()

    fun dumps(value: Any?, sortKeys: Boolean = false, compact: Boolean = false): String {
        val out = StringBuilder()
        write(out, value, sortKeys, if (compact) "," else ", ", if (compact) ":" else ": ")
        return out.toString()
    }

    /** The identity's config string: Python's json.dumps(config, sort_keys=True, separators=(",", ":")). */
    fun canonical(value: Any?): String = dumps(value, sortKeys = true, compact = true)

    private fun write(out: StringBuilder, value: Any?, sortKeys: Boolean, comma: String, colon: String) {
        when (value) {
            null -> out.append("null")
            is Boolean -> out.append(if (value) "true" else "false")
            is String -> writeString(out, value)
            is Int, is Long, is Short, is Byte -> out.append(value.toString())
            is Double -> out.append(pythonFloat(value))
            is Float -> out.append(pythonFloat(value.toDouble()))
            is Map<*, *> -> {
                val keys = value.keys.map { it as? String ?: throw JsonError("object keys must be strings, got $it") }
                out.append('{')
                for ((i, key) in (if (sortKeys) keys.sorted() else keys).withIndex()) {
                    if (i > 0) out.append(comma)
                    writeString(out, key)
                    out.append(colon)
                    write(out, value[key], sortKeys, comma, colon)
                }
                out.append('}')
            }
            is Iterable<*> -> {
                out.append('[')
                for ((i, item) in value.withIndex()) {
                    if (i > 0) out.append(comma)
                    write(out, item, sortKeys, comma, colon)
                }
                out.append(']')
            }
            is LongArray -> write(out, value.toList(), sortKeys, comma, colon)
            is IntArray -> write(out, value.toList(), sortKeys, comma, colon)
            else -> throw JsonError("cannot write ${value.javaClass.simpleName} as JSON")
        }
    }

    private fun writeString(out: StringBuilder, s: String) {
        out.append('"')
        var i = 0
        while (i < s.length) {
            val cp = s.codePointAt(i)
            i += Character.charCount(cp)
            when {
                cp == 0x22 -> out.append("\\\"")
                cp == 0x5C -> out.append("\\\\")
                cp == 0x0A -> out.append("\\n")
                cp == 0x0D -> out.append("\\r")
                cp == 0x09 -> out.append("\\t")
                cp == 0x08 -> out.append("\\b")
                cp == 0x0C -> out.append("\\f")
                cp in 0x20..0x7E -> out.append(s[i - 1])
                cp > 0xFFFF -> {  // Python escapes a code point beyond the BMP as its UTF-16 surrogate pair
                    val v = cp - 0x10000
                    hex4(out, 0xD800 + (v shr 10))
                    hex4(out, 0xDC00 + (v and 0x3FF))
                }
                else -> hex4(out, cp)
            }
        }
        out.append('"')
    }

    private fun hex4(out: StringBuilder, unit: Int) {
        out.append("\\u")
        val hex = Integer.toHexString(unit)
        for (k in hex.length until 4) out.append('0')
        out.append(hex)
    }

    /** Python's repr of a float: shortest round-trip digits, fixed notation for exponents -4..15, else 1e-05. */
    fun pythonFloat(d: Double): String {
        if (d.isNaN()) return "NaN"
        if (d.isInfinite()) return if (d > 0) "Infinity" else "-Infinity"
        if (d == 0.0) return if (1.0 / d < 0) "-0.0" else "0.0"
        val decimal = BigDecimal(java.lang.Double.toString(Math.abs(d))).stripTrailingZeros()
        val digits = decimal.unscaledValue().toString()
        val exponent = digits.length - 1 - decimal.scale()  // power of ten of the first digit
        val body = when {
            exponent < -4 || exponent >= 16 -> {
                val mantissa = if (digits.length == 1) digits else digits.substring(0, 1) + "." + digits.substring(1)
                val e = Math.abs(exponent).toString()
                mantissa + "e" + (if (exponent < 0) "-" else "+") + (if (e.length < 2) "0$e" else e)
            }
            exponent < 0 -> "0." + "0".repeat(-exponent - 1) + digits
            digits.length <= exponent + 1 -> digits + "0".repeat(exponent + 1 - digits.length) + ".0"
            else -> digits.substring(0, exponent + 1) + "." + digits.substring(exponent + 1)
        }
        return if (d < 0) "-$body" else body
    }

    private class Parser(private val s: String) {
        private var pos = 0

        fun document(): Any? {
            val value = value()
            skipSpace()
            if (pos != s.length) fail("unexpected text after the JSON value")
            return value
        }

        private fun fail(what: String): Nothing = throw JsonError("invalid JSON at character $pos: $what")

        private fun skipSpace() {
            while (pos < s.length && (s[pos] == ' ' || s[pos] == '\n' || s[pos] == '\r' || s[pos] == '\t')) pos++
        }

        private fun value(): Any? {
            skipSpace()
            if (pos >= s.length) fail("unexpected end")
            return when (s[pos]) {
                '{' -> obj()
                '[' -> array()
                '"' -> string()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> number()
            }
        }

        private fun literal(word: String, result: Any?): Any? {
            if (!s.startsWith(word, pos)) fail("unknown literal")
            pos += word.length
            return result
        }

        private fun obj(): Map<String, Any?> {
            val map = LinkedHashMap<String, Any?>()
            pos++
            skipSpace()
            if (pos < s.length && s[pos] == '}') { pos++; return map }
            while (true) {
                skipSpace()
                if (pos >= s.length || s[pos] != '"') fail("expected a string key")
                val key = string()
                skipSpace()
                if (pos >= s.length || s[pos] != ':') fail("expected ':'")
                pos++
                map[key] = value()
                skipSpace()
                if (pos >= s.length) fail("unterminated object")
                val next = s[pos++]
                if (next == '}') return map
                if (next != ',') { pos--; fail("expected ',' or '}'") }
            }
        }

        private fun array(): List<Any?> {
            val list = ArrayList<Any?>()
            pos++
            skipSpace()
            if (pos < s.length && s[pos] == ']') { pos++; return list }
            while (true) {
                list.add(value())
                skipSpace()
                if (pos >= s.length) fail("unterminated array")
                val next = s[pos++]
                if (next == ']') return list
                if (next != ',') { pos--; fail("expected ',' or ']'") }
            }
        }

        private fun string(): String {
            pos++  // opening quote
            val out = StringBuilder()
            while (true) {
                if (pos >= s.length) fail("unterminated string")
                val c = s[pos++]
                when {
                    c == '"' -> return out.toString()
                    c == '\\' -> {
                        if (pos >= s.length) fail("unterminated escape")
                        when (s[pos++]) {
                            '"' -> out.append('"')
                            '\\' -> out.append('\\')
                            '/' -> out.append('/')
                            'b' -> out.append('\b')
                            'f' -> out.append('\u000C')
                            'n' -> out.append('\n')
                            'r' -> out.append('\r')
                            't' -> out.append('\t')
                            // \uD83D\uDE00 arrives as two UTF-16 units: appended in turn, they form the code point
                            'u' -> out.append(hexUnit())
                            else -> { pos--; fail("unknown escape") }
                        }
                    }
                    c < ' ' -> { pos--; fail("control character in a string") }
                    else -> out.append(c)
                }
            }
        }

        private fun hexUnit(): Char {
            if (pos + 4 > s.length) fail("short \\u escape")
            var unit = 0
            for (k in 0 until 4) {
                val digit = Character.digit(s[pos + k], 16)
                if (digit < 0) fail("bad hex digit in \\u escape")
                unit = unit * 16 + digit
            }
            pos += 4
            return unit.toChar()
        }

        private fun number(): Any {
            val start = pos
            if (pos < s.length && s[pos] == '-') pos++
            val intStart = pos
            while (pos < s.length && s[pos] in '0'..'9') pos++
            if (pos == intStart) fail("expected a value")
            if (pos - intStart > 1 && s[intStart] == '0') fail("leading zero in a number")
            var integral = true
            if (pos < s.length && s[pos] == '.') {
                integral = false
                pos++
                val fracStart = pos
                while (pos < s.length && s[pos] in '0'..'9') pos++
                if (pos == fracStart) fail("expected digits after '.'")
            }
            if (pos < s.length && (s[pos] == 'e' || s[pos] == 'E')) {
                integral = false
                pos++
                if (pos < s.length && (s[pos] == '+' || s[pos] == '-')) pos++
                val expStart = pos
                while (pos < s.length && s[pos] in '0'..'9') pos++
                if (pos == expStart) fail("expected digits in the exponent")
            }
            val text = s.substring(start, pos)
            if (integral) {
                val asLong = text.toLongOrNull()
                if (asLong != null) return asLong
            }
            return text.toDouble()
        }
    }
}

/** Typed access to parsed JSON with errors that say which field was wrong. */
internal fun Map<String, Any?>.field(key: String, where: String): Any? {
    if (!containsKey(key)) throw BundleError("$where: the field '$key' is missing")
    return get(key)
}

@Suppress("UNCHECKED_CAST")
internal fun Map<String, Any?>.obj(key: String, where: String): Map<String, Any?> =
    field(key, where) as? Map<String, Any?> ?: throw BundleError("$where: '$key' must be an object")

internal fun Map<String, Any?>.list(key: String, where: String): List<Any?> =
    field(key, where) as? List<Any?> ?: throw BundleError("$where: '$key' must be a list")

internal fun Map<String, Any?>.string(key: String, where: String): String =
    field(key, where) as? String ?: throw BundleError("$where: '$key' must be a string")

internal fun Map<String, Any?>.long(key: String, where: String): Long =
    field(key, where) as? Long ?: throw BundleError("$where: '$key' must be an integer")

internal fun Map<String, Any?>.number(key: String, where: String): Double =
    (field(key, where) as? Number)?.toDouble() ?: throw BundleError("$where: '$key' must be a number")
