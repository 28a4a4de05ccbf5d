package dev.quicedge.demo

import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import kotlin.system.exitProcess

/**
 * A command line over the app's plain-Kotlin parts, so tests/test_android_demo.py can run them on the JVM
 * (kotlinc + java, no Android SDK) against the Python implementation. Not used by the app itself.
 * Errors the app would show a person print as one line `error: ...` with exit code 2.
 */
object JvmCheck {
    private const val USAGE = """usage: JvmCheck COMMAND ...
  tokenize TOKENIZER_JSON SEQ_LEN TEXTS_JSONL OUT_JSONL   one JSON string per input line -> [ids, mask] per line
  verify BUNDLE_DIR [DIGEST|- [PUBLIC_KEY_PEM ...]]       verify a bundle (pinned digest, trusted keys), print what the app reads
  canon JSON_FILE [compact]                               print json.dumps(value, sort_keys=True[, separators=(",", ":")])
  delta-from-checkpoint BUNDLE_DIR CHECKPOINT OUT         the delta of the trainable tensors in an ORT checkpoint
  delta-raw BUNDLE_DIR RAW_F32 OUT                        the delta of float32 values given in manifest order
  check-batch BUNDLE_DIR BATCH_JSON                       the checks at the door on {"input_ids", "attention_mask", "labels"}
  ckpt-save WORK_DIR IDENTITY_JSON STEP STATE_FILE        save a checkpoint whose runtime file is a copy of STATE_FILE
  ckpt-resume WORK_DIR IDENTITY_JSON [start-over]         resume: the newest checkpoint that verifies
  ckpt-list WORK_DIR                                      checkpoint folders (newest first) and all entries
  csv CSV_FILE LABELS_JSON                                the examples of a text,label CSV
  schedule NAME TOTAL                                     the learning-rate multiplier of each step of a run"""

    fun run(args: Array<String>): Int {
        if (args.isEmpty()) return usage()
        val a = args.drop(1)
        when (args[0]) {
            "tokenize" -> tokenize(File(a[0]), a[1].toInt(), File(a[2]), File(a[3]))
            "verify" -> {
                val digest = a.getOrNull(1)?.takeIf { it != "-" }
                val keys = if (a.size > 2) a.drop(2).map { Bundle.publicKey(File(it).readText(Charsets.US_ASCII)) } else null
                println(Json.dumps(summary(Bundle.open(File(a[0]), expectedDigest = digest, trustedKeys = keys))))
            }
            "canon" -> println(Json.dumps(Json.parse(File(a[0]).readText(Charsets.UTF_8)), sortKeys = true,
                compact = a.getOrNull(1) == "compact"))
            "check-batch" -> {
                val bundle = Bundle.open(File(a[0]))
                @Suppress("UNCHECKED_CAST")
                val batch = Json.parse(File(a[1]).readText(Charsets.UTF_8)) as Map<String, Any?>
                bundle.checkBatch(rows(batch["input_ids"]), rows(batch["attention_mask"]), longs(batch["labels"]))
                println("ok")
            }
            "delta-from-checkpoint" -> {
                val bundle = Bundle.open(File(a[0]))
                val params = bundle.fromStored(OrtCheckpointFile.trainableParameters(File(a[1])))
                DeltaWriter.write(File(a[2]), params.filterKeys { bundle.trainable.containsKey(it) }, bundle)
            }
            "delta-raw" -> deltaRaw(Bundle.open(File(a[0])), File(a[1]), File(a[2]))
            "ckpt-save" -> {
                val store = CheckpointStore(File(a[0]), BundleFields.RUNTIME_ORT, identity(File(a[1])))
                val final = store.save(a[2].toLong()) { folder -> File(a[3]).copyTo(File(folder, BundleFields.CHECKPOINT_FILE)) }
                println(final.name)
            }
            "ckpt-resume" -> {
                val store = CheckpointStore(File(a[0]), BundleFields.RUNTIME_ORT, identity(File(a[1])))
                // what the app's loader would refuse: a checkpoint file ONNX Runtime cannot read
                val resumed = store.resume(startOver = a.getOrNull(2) == "start-over") {
                    OrtCheckpointFile.trainableParameters(File(it, BundleFields.CHECKPOINT_FILE))
                }
                val result = LinkedHashMap<String, Any?>()
                result["folder"] = resumed.folder?.name
                result["step"] = resumed.step
                result["skipped"] = resumed.skipped
                println(Json.dumps(result))
            }
            "ckpt-list" -> {
                val store = CheckpointStore(File(a[0]), BundleFields.RUNTIME_ORT, emptyMap())
                val all = (store.dir.listFiles() ?: emptyArray()).map { it.name }.sorted()
                println(Json.dumps(linkedMapOf("checkpoints" to store.checkpoints().map { it.name }, "entries" to all)))
            }
            "csv" -> {
                @Suppress("UNCHECKED_CAST")
                val labels = Json.parse(File(a[1]).readText(Charsets.UTF_8)) as List<String>
                val examples = TrainingData.readCsv(File(a[0]).readText(Charsets.UTF_8), labels, File(a[0]).name)
                println(Json.dumps(examples.map { listOf(it.text, it.label) }))
            }
            "schedule" -> {
                val total = a[1].toInt()
                println(Json.dumps(List(total) { LearningRateSchedule.multiplier(a[0], it, total) }))
            }
            else -> return usage()
        }
        return 0
    }

    @Suppress("UNCHECKED_CAST")
    private fun identity(file: File): Map<String, String> =
        (Json.parse(file.readText(Charsets.UTF_8)) as Map<String, Any?>).mapValues { it.value as String }

    private fun longs(value: Any?): LongArray =
        (value as? List<*> ?: throw IllegalArgumentException("expected a list of integers")).map {
            it as? Long ?: throw IllegalArgumentException("expected integers, got $it")
        }.toLongArray()

    private fun rows(value: Any?): Array<LongArray> =
        (value as? List<*> ?: throw IllegalArgumentException("expected a list of rows")).map { longs(it) }.toTypedArray()

    private fun usage(): Int {
        System.err.println(USAGE)
        return 2
    }

    private fun tokenize(tokenizerJson: File, seqLen: Int, textsFile: File, out: File) {
        val tokenizer = WordPieceTokenizer.fromFile(tokenizerJson)
        val texts = textsFile.readLines(Charsets.UTF_8).map { Json.parse(it) as String }
        val encoded = tokenizer.encode(texts, seqLen)
        out.bufferedWriter(Charsets.UTF_8).use { writer ->
            for (i in texts.indices) {
                writer.write(Json.dumps(listOf(encoded.inputIds[i], encoded.attentionMask[i])))
                writer.write("\n")
            }
        }
    }

    private fun summary(bundle: Bundle): Map<String, Any?> {
        val result = LinkedHashMap<String, Any?>()
        result["runtime"] = bundle.runtime
        result["model"] = bundle.model
        result["labels"] = bundle.labels
        result["inputs"] = bundle.inputs.map { spec(it) }
        result["target"] = spec(bundle.target)
        result["optimizer"] = bundle.optimizerName
        result["lr"] = bundle.learningRate
        result["batch_size"] = bundle.batchSize
        result["seq_len"] = bundle.seqLen
        result["trainable"] = bundle.trainable
        result["base_fingerprint"] = bundle.baseFingerprint
        result["identity"] = bundle.identity

        val roles = listOf(
            BundleFields.ROLE_TRAINING_MODEL, BundleFields.ROLE_EVAL_MODEL, BundleFields.ROLE_OPTIMIZER_MODEL,
            BundleFields.ROLE_CHECKPOINT, BundleFields.ROLE_TOKENIZER, BundleFields.ROLE_LABELS
        )
        result["files"] = roles.associate { it to bundle.file(it).path }
        result["delta_metadata"] = DeltaWriter.metadata(bundle)
        return result
    }

    private fun spec(s: TensorSpec): Map<String, Any?> {
        val map = linkedMapOf<String, Any?>("name" to s.name, "shape" to s.shape, "dtype" to s.dtype)
        s.range?.let { map["range"] = listOf(it.first, it.last) }
        return map
    }

    private fun deltaRaw(bundle: Bundle, raw: File, out: File) {
        val values = ByteBuffer.wrap(raw.readBytes()).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
        val tensors = LinkedHashMap<String, FloatTensor>()
        for ((name, shape) in bundle.trainable) {
            val data = FloatArray(shape.fold(1L) { x, y -> x * y }.toInt())
            values.get(data)
            tensors[name] = FloatTensor(shape, data)
        }
        if (values.hasRemaining()) throw IllegalArgumentException("$raw holds more values than the bundle's trainable tensors")
        DeltaWriter.write(out, tensors, bundle)
    }
}

fun main(args: Array<String>) {
    val code = try {
        JvmCheck.run(args)
    } catch (err: IllegalArgumentException) {  // BundleError, DataError, JsonError and other refusals
        System.err.println("error: ${err.message}")
        2
    } catch (err: IllegalStateException) {
        System.err.println("error: ${err.message}")
        2
    }
    exitProcess(code)
}
