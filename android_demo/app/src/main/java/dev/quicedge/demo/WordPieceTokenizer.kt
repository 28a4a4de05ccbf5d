package dev.quicedge.demo

import java.io.File
import java.text.Normalizer

/** Fixed-length token ids and attention mask, [texts][seqLen], as quic_edge.data.encode_texts returns them. */
class EncodedBatch(val inputIds: Array<LongArray>, val attentionMask: Array<LongArray>)

/**
 * The BERT WordPiece tokenizer of a Hugging Face `tokenizer.json` (MiniLM's), read from that file alone.
 *
 * Follows the `tokenizers` pipeline step by step: special tokens are cut out of the raw text first
 * (AddedVocabulary), then BertNormalizer (clean text, space around CJK ideographs, NFD + drop nonspacing
 * marks, lowercase), BertPreTokenizer (split on whitespace, isolate punctuation), WordPiece (greedy longest
 * match, `##` continuations, [UNK] for words it cannot cover or longer than max_input_chars_per_word),
 * then `[CLS] ... [SEP]`, truncation to seqLen and padding with id 0. Character classes come from the
 * platform's Unicode tables (java.lang.Character); `tokenizers` uses the tables of the Rust crate
 * unicode_categories, which can differ for characters added to Unicode recently (see README).
 */
class WordPieceTokenizer private constructor(
    private val vocab: Map<String, Int>,
    private val unkId: Int,
    private val prefix: String,
    private val maxInputChars: Int,
    private val clsId: Int,
    private val sepId: Int,
    private val specialTokens: List<Pair<String, Int>>,  // cut from the raw text, longest first
    private val cleanText: Boolean,
    private val chineseChars: Boolean,
    private val stripAccents: Boolean,
    private val lowercase: Boolean
) {
    /** Token ids of one text without [CLS]/[SEP], untruncated. */
    fun tokenIds(text: String): List<Int> {
        val ids = ArrayList<Int>()
        var start = 0
        var i = 0
        while (i < text.length) {
            val special = specialTokens.firstOrNull { text.startsWith(it.first, i) }
            if (special == null) {
                i++
                continue
            }
            wordPieces(text.substring(start, i), ids)
            ids.add(special.second)
            i += special.first.length
            start = i
        }
        wordPieces(text.substring(start), ids)
        return ids
    }

    /** Ids and mask of fixed length seqLen: [CLS] + up to seqLen - 2 tokens + [SEP], padded with 0. */
    fun encode(texts: List<String>, seqLen: Int): EncodedBatch {
        require(seqLen >= 2) { "seqLen must be at least 2 ([CLS] and [SEP]), got $seqLen" }
        val ids = Array(texts.size) { LongArray(seqLen) }
        val mask = Array(texts.size) { LongArray(seqLen) }
        for ((row, text) in texts.withIndex()) {
            val tokens = tokenIds(text)
            val kept = Math.min(tokens.size, seqLen - 2)
            val sequence = ArrayList<Int>(kept + 2)
            sequence.add(clsId)
            sequence.addAll(tokens.subList(0, kept))
            sequence.add(sepId)
            for ((k, id) in sequence.withIndex()) {
                ids[row][k] = id.toLong()
                mask[row][k] = 1L
            }
        }
        return EncodedBatch(ids, mask)
    }

    private fun wordPieces(segment: String, out: MutableList<Int>) {
        if (segment.length == 0) return
        for (word in preTokenize(normalize(segment))) wordPiece(word, out)
    }

    // ---- BertNormalizer -------------------------------------------------------------------------
    internal fun normalize(text: String): String {
        val cleaned = StringBuilder(text.length + 8)
        forEachCodePoint(text) { cp ->
            if (cleanText && (cp == 0 || cp == 0xFFFD || isControl(cp))) return@forEachCodePoint
            val c = if (cleanText && isWhitespace(cp)) 0x20 else cp
            if (chineseChars && isChineseChar(c)) {
                cleaned.append(' ').appendCodePoint(c).append(' ')
            } else {
                cleaned.appendCodePoint(c)
            }
        }
        var s = cleaned.toString()
        if (stripAccents) {
            val kept = StringBuilder(s.length)
            forEachCodePoint(Normalizer.normalize(s, Normalizer.Form.NFD)) { cp ->
                if (category(cp) != Character.NON_SPACING_MARK.toInt()) kept.appendCodePoint(cp)
            }
            s = kept.toString()
        }
        if (lowercase) {
            val lower = StringBuilder(s.length)
            forEachCodePoint(s) { cp ->
                // Rust's char::to_lowercase, one code point at a time (no context rules such as final sigma);
                // U+0130 is the one code point whose lowercase is two code points.
                if (cp == 0x130) lower.append("i\u0307") else lower.appendCodePoint(Character.toLowerCase(cp))
            }
            s = lower.toString()
        }
        return s
    }

    // ---- BertPreTokenizer -----------------------------------------------------------------------
    internal fun preTokenize(text: String): List<String> {
        val words = ArrayList<String>()
        val word = StringBuilder()
        forEachCodePoint(text) { cp ->
            when {
                isRustWhitespace(cp) -> flush(word, words)
                isBertPunctuation(cp) -> {
                    flush(word, words)
                    words.add(String(Character.toChars(cp)))
                }
                else -> word.appendCodePoint(cp)
            }
        }
        flush(word, words)
        return words
    }

    private fun flush(word: StringBuilder, words: MutableList<String>) {
        if (word.isNotEmpty()) words.add(word.toString())
        word.setLength(0)
    }

    // ---- WordPiece ------------------------------------------------------------------------------
    private fun wordPiece(word: String, out: MutableList<Int>) {
        val codePoints = word.codePointCount(0, word.length)
        if (codePoints > maxInputChars) {
            out.add(unkId)
            return
        }
        val boundaries = IntArray(codePoints + 1)  // UTF-16 index of each code point, then the end
        var index = 0
        for (k in 0 until codePoints) {
            boundaries[k] = index
            index += Character.charCount(word.codePointAt(index))
        }
        boundaries[codePoints] = word.length
        val pieces = ArrayList<Int>()
        var start = 0
        while (start < codePoints) {
            var end = codePoints
            var found = -1
            while (start < end) {
                val piece = word.substring(boundaries[start], boundaries[end])
                val id = vocab[if (start > 0) prefix + piece else piece]
                if (id != null) {
                    found = id
                    break
                }
                end--
            }
            if (found < 0) {
                out.add(unkId)
                return
            }
            pieces.add(found)
            start = end
        }
        out.addAll(pieces)
    }

    companion object {
        fun fromFile(file: File): WordPieceTokenizer = fromJson(file.readText(Charsets.UTF_8))

        /** Build from the text of a tokenizer.json; refuses pipelines this class does not reproduce. */
        fun fromJson(text: String): WordPieceTokenizer {
            @Suppress("UNCHECKED_CAST")
            val root = Json.parse(text) as? Map<String, Any?> ?: throw BundleError("tokenizer.json: not an object")
            val w = "tokenizer.json"
            val model = root.obj("model", w)
            require(model["type"] == "WordPiece", "$w: model type ${model["type"]}; only WordPiece is supported")
            val normalizer = root.obj("normalizer", w)
            require(normalizer["type"] == "BertNormalizer", "$w: normalizer ${normalizer["type"]}; only BertNormalizer")
            val preTokenizer = root.obj("pre_tokenizer", w)
            require(preTokenizer["type"] == "BertPreTokenizer", "$w: pre_tokenizer ${preTokenizer["type"]}; only BertPreTokenizer")

            val vocab = HashMap<String, Int>()
            for ((token, id) in model.obj("vocab", w)) {
                vocab[token] = (id as? Long ?: throw BundleError("$w: vocab ids must be integers")).toInt()
            }
            val unkToken = model.string("unk_token", w)
            val unkId = vocab[unkToken] ?: throw BundleError("$w: unk_token $unkToken is not in the vocab")
            val lowercase = normalizer["lowercase"] as? Boolean ?: true
            val (clsId, sepId) = clsSep(root, vocab)
            return WordPieceTokenizer(
                vocab = vocab,
                unkId = unkId,
                prefix = model["continuing_subword_prefix"] as? String ?: "##",
                maxInputChars = ((model["max_input_chars_per_word"] as? Long) ?: 100L).toInt(),
                clsId = clsId,
                sepId = sepId,
                specialTokens = specialTokens(root),
                cleanText = normalizer["clean_text"] as? Boolean ?: true,
                chineseChars = normalizer["handle_chinese_chars"] as? Boolean ?: true,
                stripAccents = normalizer["strip_accents"] as? Boolean ?: lowercase,  // null follows lowercase
                lowercase = lowercase
            )
        }

        private fun require(ok: Boolean, message: String) {
            if (!ok) throw BundleError(message)
        }

        /** The [CLS] and [SEP] ids of a `[CLS] $A [SEP]` post-processor (TemplateProcessing or BertProcessing). */
        private fun clsSep(root: Map<String, Any?>, vocab: Map<String, Int>): Pair<Int, Int> {
            val w = "tokenizer.json post_processor"
            val post = root.obj("post_processor", w)
            if (post["type"] == "BertProcessing") {
                val cls = post.list("cls", w)
                val sep = post.list("sep", w)
                return Pair((cls[1] as Long).toInt(), (sep[1] as Long).toInt())
            }
            require(post["type"] == "TemplateProcessing", "$w: ${post["type"]} is not supported")
            val single = post.list("single", w).map {
                @Suppress("UNCHECKED_CAST")
                val piece = it as Map<String, Any?>
                when {
                    piece.containsKey("SpecialToken") -> (piece["SpecialToken"] as Map<*, *>)["id"] as String
                    piece.containsKey("Sequence") -> "$" + (piece["Sequence"] as Map<*, *>)["id"]
                    else -> "?"
                }
            }
            require(single.size == 3 && single[1] == "\$A", "$w: only '[CLS] \$A [SEP]' templates are supported, got $single")
            val specials = post.obj("special_tokens", w)
            fun idOf(token: String): Int {
                @Suppress("UNCHECKED_CAST")
                val entry = specials[token] as? Map<String, Any?> ?: throw BundleError("$w: no special token $token")
                val ids = entry.list("ids", w)
                require(ids.size == 1, "$w: $token must map to one id")
                return (ids[0] as Long).toInt().also { if (!vocab.containsValue(it)) throw BundleError("$w: id $it unknown") }
            }
            return Pair(idOf(single[0]), idOf(single[2]))
        }

        /** Added tokens matched in the raw text (normalized: false), longest first for leftmost-longest. */
        private fun specialTokens(root: Map<String, Any?>): List<Pair<String, Int>> {
            val w = "tokenizer.json added_tokens"
            val tokens = ArrayList<Pair<String, Int>>()
            for (item in root["added_tokens"] as? List<*> ?: emptyList<Any?>()) {
                @Suppress("UNCHECKED_CAST")
                val token = item as Map<String, Any?>
                val content = token.string("content", w)
                for (flag in listOf("normalized", "lstrip", "rstrip", "single_word")) {
                    require(token[flag] != true, "$w: $content has $flag=true, which this tokenizer does not reproduce")
                }
                if (content.isNotEmpty()) tokens.add(Pair(content, token.long("id", w).toInt()))
            }
            return tokens.sortedByDescending { it.first.length }
        }

        private inline fun forEachCodePoint(s: String, action: (Int) -> Unit) {
            var i = 0
            while (i < s.length) {
                val cp = s.codePointAt(i)
                action(cp)
                i += Character.charCount(cp)
            }
        }

        /**
         * The General_Category `tokenizers` sees: it uses the Unicode 8.0 tables of the Rust crate
         * unicode_categories 0.1.1, so characters assigned later count as unassigned (they stay inside a
         * word, which becomes [UNK]) and a few characters keep their 8.0 category. The platform's tables
         * (java.lang.Character: Unicode 13 on Java 17, the ICU version on Android) give the rest.
         */
        private fun category(cp: Int): Int = when {
            isAssignedAfterUnicode8(cp) -> Character.UNASSIGNED.toInt()
            cp == 0x166D || cp == 0x111C9 -> Character.OTHER_PUNCTUATION.toInt()  // Po in 8.0; So and Mn today
            cp == 0x1885 || cp == 0x1886 -> Character.OTHER_LETTER.toInt()  // Lo in 8.0; Mn today
            cp == 0xA9BD -> Character.COMBINING_SPACING_MARK.toInt()  // Mc in 8.0; Mn today
            else -> Character.getType(cp)
        }

        private fun isAssignedAfterUnicode8(cp: Int): Boolean {
            var lo = 0
            var hi = ASSIGNED_AFTER_UNICODE_8.size / 2 - 1
            while (lo <= hi) {
                val mid = (lo + hi) ushr 1
                when {
                    cp < ASSIGNED_AFTER_UNICODE_8[2 * mid] -> hi = mid - 1
                    cp > ASSIGNED_AFTER_UNICODE_8[2 * mid + 1] -> lo = mid + 1
                    else -> return true
                }
            }
            return false
        }

        /** Cc, Cf, Co (and lone surrogates) except tab, newline, carriage return: removed by clean_text.
         *  Unassigned code points (Cn) stay, as in tokenizers: they end up in an [UNK] word. */
        private fun isControl(cp: Int): Boolean {
            if (cp == 0x09 || cp == 0x0A || cp == 0x0D) return false
            return when (category(cp)) {
                Character.CONTROL.toInt(), Character.FORMAT.toInt(), Character.PRIVATE_USE.toInt(),
                Character.SURROGATE.toInt() -> true
                else -> false
            }
        }

        private fun isWhitespace(cp: Int): Boolean = cp == 0x09 || cp == 0x0A || cp == 0x0D || isRustWhitespace(cp)

        /** Rust's char::is_whitespace: the Unicode White_Space property (not Java's isWhitespace). */
        private fun isRustWhitespace(cp: Int): Boolean = when (cp) {
            in 0x09..0x0D, 0x20, 0x85, 0xA0, 0x1680, in 0x2000..0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000 -> true
            else -> false
        }

        /** ASCII punctuation (including $+<=>^`|~) or any Unicode punctuation category P*. */
        private fun isBertPunctuation(cp: Int): Boolean {
            if (cp in 0x21..0x2F || cp in 0x3A..0x40 || cp in 0x5B..0x60 || cp in 0x7B..0x7E) return true
            return when (category(cp)) {
                Character.CONNECTOR_PUNCTUATION.toInt(), Character.DASH_PUNCTUATION.toInt(),
                Character.START_PUNCTUATION.toInt(), Character.END_PUNCTUATION.toInt(),
                Character.INITIAL_QUOTE_PUNCTUATION.toInt(), Character.FINAL_QUOTE_PUNCTUATION.toInt(),
                Character.OTHER_PUNCTUATION.toInt() -> true
                else -> false
            }
        }

        /** The CJK ideograph blocks BertNormalizer puts spaces around (tokenizers' is_chinese_char). */
        private fun isChineseChar(cp: Int): Boolean =
            cp in 0x4E00..0x9FFF || cp in 0x3400..0x4DBF || cp in 0x20000..0x2A6DF || cp in 0x2A700..0x2B73F ||
                cp in 0x2B740..0x2B81F || cp in 0x2B920..0x2CEAF || cp in 0xF900..0xFAFF || cp in 0x2F800..0x2FA1F
    }
}

/**
 * Inclusive code point ranges [first, last, first, last, ...] of characters Unicode assigned after 8.0
 * whose category BertNormalizer or BertPreTokenizer would act on (Cc, Cf, Co, Mn, P*). Generated by
 * android_demo/tools/unicode8_table.pl from Unicode 14.0.0: 497 code points in 101 ranges.
 */
private val ASSIGNED_AFTER_UNICODE_8 = intArrayOf(
    0x61D, 0x61D, 0x7FD, 0x7FD, 0x890, 0x891, 0x898, 0x89F, 0x8CA, 0x8E2, 0x9FD, 0x9FE,
    0xA76, 0xA76, 0xAFA, 0xAFF, 0xB55, 0xB55, 0xC04, 0xC04, 0xC3C, 0xC3C, 0xC77, 0xC77,
    0xC84, 0xC84, 0xD00, 0xD00, 0xD3B, 0xD3C, 0xD81, 0xD81, 0xEBA, 0xEBA, 0x180F, 0x180F,
    0x1ABF, 0x1ACE, 0x1B7D, 0x1B7E, 0x1DF6, 0x1DFB, 0x2E43, 0x2E4F, 0x2E52, 0x2E5D, 0xA82C, 0xA82C,
    0xA8C5, 0xA8C5, 0xA8FF, 0xA8FF, 0x10D24, 0x10D27, 0x10EAB, 0x10EAD, 0x10F46, 0x10F50, 0x10F55, 0x10F59,
    0x10F82, 0x10F89, 0x11070, 0x11070, 0x11073, 0x11074, 0x110C2, 0x110C2, 0x110CD, 0x110CD, 0x111CF, 0x111CF,
    0x1123E, 0x1123E, 0x1133B, 0x1133B, 0x11438, 0x1143F, 0x11442, 0x11444, 0x11446, 0x11446, 0x1144B, 0x1144F,
    0x1145A, 0x1145B, 0x1145D, 0x1145E, 0x11660, 0x1166C, 0x116B9, 0x116B9, 0x1182F, 0x11837, 0x11839, 0x1183B,
    0x1193B, 0x1193C, 0x1193E, 0x1193E, 0x11943, 0x11946, 0x119D4, 0x119D7, 0x119DA, 0x119DB, 0x119E0, 0x119E0,
    0x119E2, 0x119E2, 0x11A01, 0x11A0A, 0x11A33, 0x11A38, 0x11A3B, 0x11A47, 0x11A51, 0x11A56, 0x11A59, 0x11A5B,
    0x11A8A, 0x11A96, 0x11A98, 0x11A9C, 0x11A9E, 0x11AA2, 0x11C30, 0x11C36, 0x11C38, 0x11C3D, 0x11C3F, 0x11C3F,
    0x11C41, 0x11C45, 0x11C70, 0x11C71, 0x11C92, 0x11CA7, 0x11CAA, 0x11CB0, 0x11CB2, 0x11CB3, 0x11CB5, 0x11CB6,
    0x11D31, 0x11D36, 0x11D3A, 0x11D3A, 0x11D3C, 0x11D3D, 0x11D3F, 0x11D45, 0x11D47, 0x11D47, 0x11D90, 0x11D91,
    0x11D95, 0x11D95, 0x11D97, 0x11D97, 0x11EF3, 0x11EF4, 0x11EF7, 0x11EF8, 0x11FFF, 0x11FFF, 0x12FF1, 0x12FF2,
    0x13430, 0x13438, 0x16E97, 0x16E9A, 0x16F4F, 0x16F4F, 0x16FE2, 0x16FE2, 0x16FE4, 0x16FE4, 0x1CF00, 0x1CF2D,
    0x1CF30, 0x1CF46, 0x1E000, 0x1E006, 0x1E008, 0x1E018, 0x1E01B, 0x1E021, 0x1E023, 0x1E024, 0x1E026, 0x1E02A,
    0x1E130, 0x1E136, 0x1E2AE, 0x1E2AE, 0x1E2EC, 0x1E2EF, 0x1E944, 0x1E94A, 0x1E95E, 0x1E95F
)
