package dev.quicedge.demo

import kotlin.random.Random

/** One labelled text. */
class Example(val text: String, val label: String)

/** A data file that cannot be used; the message names the line, as quic_edge.data.read_examples does. */
class DataError(message: String) : IllegalArgumentException(message)

/** The person's labelled texts (a `text,label` CSV, as `quic-edge train --data` reads) and fixed-size batches. */
object TrainingData {
    /** Rows of a CSV with a header naming the columns text and label (any order, more columns allowed). */
    fun readCsv(content: String, labels: List<String>, where: String = "data.csv"): List<Example> {
        val records = parseCsv(content.removePrefix("\uFEFF"))  // Excel's "CSV UTF-8" starts with a byte-order mark
        if (records.isEmpty()) throw DataError("$where: no examples; give at least one text,label row")
        val header = records[0].second.map { lower(it.trim()) }
        if (!header.contains("text") || !header.contains("label")) {
            throw DataError("$where:1: the header must name the columns text and label, got $header")
        }
        val textColumn = header.indexOf("text")
        val labelColumn = header.indexOf("label")
        val examples = ArrayList<Example>()
        for ((line, row) in records.drop(1)) {
            if (row.isEmpty()) continue
            if (row.size != header.size) throw DataError("$where:$line: expected ${header.size} columns, got ${row.size}")
            val text = row[textColumn].trim()
            val label = row[labelColumn].trim()
            if (text.length == 0) throw DataError("$where:$line: empty or missing text")
            if (label.length == 0) throw DataError("$where:$line: missing label")
            if (!labels.contains(label)) throw DataError("$where:$line: label '$label' is not one of this bundle's labels $labels")
            examples.add(Example(text, label))
        }
        if (examples.isEmpty()) throw DataError("$where: no examples; give at least one text,label row")
        return examples
    }

    /**
     * (line number where the record ends, fields) per record, like Python's csv.reader with the excel
     * dialect: commas, double quotes with "" inside quotes, newlines inside quoted fields, \r\n or \n.
     * A blank line is a record with no fields.
     */
    fun parseCsv(content: String): List<Pair<Int, List<String>>> {
        val records = ArrayList<Pair<Int, List<String>>>()
        var fields = ArrayList<String>()
        val field = StringBuilder()
        var line = 1
        var quoted = false
        var i = 0
        var atRecordStart = true
        var fieldStarted = false  // a quote opens a quoted field only as the field's first character
        fun endRecord() {
            if (atRecordStart) records.add(Pair(line, emptyList())) else {
                fields.add(field.toString())
                records.add(Pair(line, fields))
            }
            fields = ArrayList()
            field.setLength(0)
            atRecordStart = true
            fieldStarted = false
        }
        while (i < content.length) {
            val c = content[i]
            if (quoted) {
                when {
                    c == '"' && i + 1 < content.length && content[i + 1] == '"' -> { field.append('"'); i++ }
                    c == '"' -> quoted = false
                    else -> { if (c == '\n') line++; field.append(c) }
                }
            } else {
                when (c) {
                    '"' -> {
                        if (fieldStarted) field.append(c) else quoted = true
                        atRecordStart = false
                        fieldStarted = true
                    }
                    ',' -> { fields.add(field.toString()); field.setLength(0); atRecordStart = false; fieldStarted = false }
                    '\r' -> {
                        endRecord()
                        if (i + 1 < content.length && content[i + 1] == '\n') i++
                        line++
                    }
                    '\n' -> { endRecord(); line++ }
                    else -> { field.append(c); atRecordStart = false; fieldStarted = true }
                }
            }
            i++
        }
        if (quoted) throw DataError("line $line: unexpected end of data inside a quoted field")
        if (!atRecordStart) endRecord()
        return records
    }

    private fun lower(s: String): String {
        val out = StringBuilder(s.length)
        var i = 0
        while (i < s.length) {
            val cp = s.codePointAt(i)
            out.appendCodePoint(Character.toLowerCase(cp))
            i += Character.charCount(cp)
        }
        return out.toString()
    }

    /** The label index of each example (labels in bundle order). */
    fun labelIds(examples: List<Example>, labels: List<String>): LongArray =
        LongArray(examples.size) { labels.indexOf(examples[it].label).toLong() }

    /** Shuffled index batches of exactly batchSize (the last partial batch dropped: the graphs have fixed shapes). */
    fun trainBatches(n: Int, batchSize: Int, random: Random): List<IntArray> {
        val order = (0 until n).toMutableList()
        order.shuffle(random)
        return (0 until n / batchSize).map { b -> IntArray(batchSize) { order[b * batchSize + it] } }
    }

    /** Index batches in order covering all n; the last one padded by repeating the final index (ignored). */
    fun paddedBatches(n: Int, batchSize: Int): List<IntArray> =
        (0 until n step batchSize).map { start -> IntArray(batchSize) { Math.min(start + it, n - 1) } }
}
