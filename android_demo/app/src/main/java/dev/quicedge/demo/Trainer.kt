package dev.quicedge.demo

import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OnnxValue
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import ai.onnxruntime.OrtTrainingSession
import dev.quicedge.demo.BundleFields as F
import java.io.File
import java.nio.LongBuffer
import kotlin.random.Random

/** Where training stands, for the UI: `done` of `total` steps of this run, the global step, the last loss. */
class Progress(val done: Int, val total: Int, val step: Long, val loss: Float)

/** A finished training run. */
class TrainReport(val steps: Int, val losses: List<Float>, val skippedSteps: List<Long>, val seconds: Double)

/**
 * The device loop on ONNX Runtime's training API for Android (ai.onnxruntime, package
 * com.microsoft.onnxruntime:onnxruntime-training-android), doing what runtimes/ort.py and runtimes/loop.py
 * do in Python: resume the newest checkpoint that verifies (else the bundle's own), train steps
 * (trainStep, then setLearningRate + optimizerStep + lazyResetGrad; a NaN or infinite loss skips the
 * update), save checkpoints atomically with the optimizer state, evaluate with the eval model (outputs
 * loss, logits) and export the personal delta.
 *
 * `bundle` must be verified (Bundle.open) and its files must be real files: ONNX Runtime loads paths.
 */
class Trainer(val bundle: Bundle, workDir: File, threads: Int = 0, startOver: Boolean = false) : AutoCloseable {
    private val env: OrtEnvironment = OrtEnvironment.getEnvironment()
    private val options = OrtSession.SessionOptions()
    private val tokenizer = WordPieceTokenizer.fromFile(bundle.file(F.ROLE_TOKENIZER))
    private val store = CheckpointStore(workDir, F.RUNTIME_ORT, bundle.identity)
    private var session: OrtTrainingSession
    /** The checkpoint training resumed from (folder null: a fresh start from the bundle) and any skipped. */
    val resumed: Resumed
    var step: Long = 0
        private set

    init {
        options.setMemoryPatternOptimization(false)  // as the Python loop: less memory growth after the first step
        if (threads > 0) options.setIntraOpNumThreads(threads)
        var opened: OrtTrainingSession? = null
        resumed = store.resume(startOver) { folder -> opened = open(File(folder, F.CHECKPOINT_FILE)) }
        session = opened ?: open(bundle.file(F.ROLE_CHECKPOINT))
        step = resumed.step
    }

    private fun open(checkpoint: File): OrtTrainingSession = env.createTrainingSession(
        checkpoint.path,
        bundle.file(F.ROLE_TRAINING_MODEL).path,
        bundle.file(F.ROLE_EVAL_MODEL).path,
        bundle.file(F.ROLE_OPTIMIZER_MODEL).path,
        options
    )

    /** One step on exactly batchSize examples; returns the loss (NaN or infinite: the update was skipped). */
    fun trainStep(texts: List<String>, labels: LongArray, lr: Double = bundle.learningRate): Float {
        val loss = withFeeds(texts, labels) { feeds ->
            session.trainStep(feeds).closing { result -> scalar(result.get(0)) }
        }
        if (!loss.isNaN() && !loss.isInfinite()) {
            session.setLearningRate(lr.toFloat())
            session.optimizerStep()
        }
        session.lazyResetGrad()
        step++
        return loss
    }

    /**
     * Epochs over the examples in shuffled full batches; a checkpoint every `checkpointEvery` steps and at the end.
     * Each step's rate is the bundle's times `schedule`'s multiplier (LearningRateSchedule; counted within this run).
     */
    fun fit(
        examples: List<Example>,
        epochs: Int,
        seed: Int = 0,
        checkpointEvery: Int = 0,
        schedule: String = LearningRateSchedule.LINEAR,
        onProgress: (Progress) -> Unit = {}
    ): TrainReport {
        LearningRateSchedule.check(schedule)
        val size = bundle.batchSize
        if (examples.size < size) throw DataError("${examples.size} examples are fewer than one batch of $size")
        val random = Random(seed + step.toInt())
        val ids = TrainingData.labelIds(examples, bundle.labels)
        val total = examples.size / size * epochs
        val losses = ArrayList<Float>()
        val skipped = ArrayList<Long>()
        val start = System.nanoTime()
        for (epoch in 0 until epochs) {
            for (batch in TrainingData.trainBatches(examples.size, size, random)) {
                val lr = bundle.learningRate * LearningRateSchedule.multiplier(schedule, losses.size, total)
                val loss = trainStep(batch.map { examples[it].text }, LongArray(size) { ids[batch[it]] }, lr)
                if (loss.isNaN() || loss.isInfinite()) skipped.add(step)
                losses.add(loss)
                if (checkpointEvery > 0 && step % checkpointEvery == 0L) saveCheckpoint()
                onProgress(Progress(losses.size, total, step, loss))
            }
        }
        saveCheckpoint()
        return TrainReport(losses.size, losses, skipped, (System.nanoTime() - start) / 1e9)
    }

    /** The predicted label index of each text (eval model, last partial batch padded). */
    fun predict(texts: List<String>): IntArray {
        val predictions = IntArray(texts.size)
        val classes = bundle.labels.size
        for (batch in TrainingData.paddedBatches(texts.size, bundle.batchSize)) {
            // the eval model also computes the loss: feed a placeholder target
            val logits = withFeeds(batch.map { texts[it] }, LongArray(bundle.batchSize)) { feeds ->
                session.evalStep(feeds).closing { result -> floats(result.get(F.EVAL_OUTPUT_LOGITS)) }
            }
            for ((row, index) in batch.withIndex()) {
                var best = 0
                for (c in 1 until classes) if (logits[row * classes + c] > logits[row * classes + best]) best = c
                predictions[index] = best
            }
        }
        return predictions
    }

    /** Accuracy on labelled examples. */
    fun evaluate(examples: List<Example>): Double {
        if (examples.isEmpty()) throw DataError("no examples to evaluate")
        val predicted = predict(examples.map { it.text })
        val expected = TrainingData.labelIds(examples, bundle.labels)
        return predicted.indices.count { predicted[it].toLong() == expected[it] }.toDouble() / examples.size
    }

    /** A new checkpoint folder (parameters and optimizer state), written atomically; the newest two are kept. */
    fun saveCheckpoint(): File = store.save(step) { folder ->
        session.saveCheckpoint(File(folder, F.CHECKPOINT_FILE).toPath(), true)
    }

    /** The personal delta (trained angles and head) as quic_edge.load_delta reads it, written atomically. */
    fun exportDelta(target: File): File {
        // The Java API cannot read parameter values: save a checkpoint and read them from its file.
        val checkpoint = File(saveCheckpoint(), F.CHECKPOINT_FILE)
        val params = bundle.fromStored(OrtCheckpointFile.trainableParameters(checkpoint))
        return DeltaWriter.write(target, params.filterKeys { bundle.trainable.containsKey(it) }, bundle)
    }

    override fun close() {
        session.close()
        options.close()
    }

    /** Run `block` with the three input tensors of a batch (ids, mask, target), closing them afterwards. */
    private fun <R> withFeeds(texts: List<String>, labels: LongArray, block: (Map<String, OnnxTensor>) -> R): R {
        val batch = bundle.batchSize
        val seq = bundle.seqLen
        if (texts.size != batch || labels.size != batch) {
            throw IllegalArgumentException("a batch holds exactly $batch examples, got ${texts.size}")
        }
        val encoded = tokenizer.encode(texts, seq)
        bundle.checkBatch(encoded.inputIds, encoded.attentionMask, labels)  // the checks at the door, before ORT sees it
        val feeds = LinkedHashMap<String, OnnxTensor>()
        try {
            feeds[F.INPUT_IDS] = tensor(encoded.inputIds, seq)
            feeds[F.INPUT_ATTENTION_MASK] = tensor(encoded.attentionMask, seq)
            feeds[F.TARGET_LABELS] = OnnxTensor.createTensor(env, LongBuffer.wrap(labels), longArrayOf(batch.toLong()))
            return block(feeds)
        } finally {
            for (t in feeds.values) t.close()
        }
    }

    private fun tensor(rows: Array<LongArray>, seq: Int): OnnxTensor {
        val buffer = LongBuffer.allocate(rows.size * seq)
        for (row in rows) buffer.put(row)
        buffer.rewind()
        return OnnxTensor.createTensor(env, buffer, longArrayOf(rows.size.toLong(), seq.toLong()))
    }

    private fun scalar(value: OnnxValue): Float = floats(value)[0]

    private fun floats(value: OnnxValue): FloatArray {
        val buffer = (value as OnnxTensor).floatBuffer ?: throw IllegalStateException("expected a float tensor output")
        val out = FloatArray(buffer.remaining())
        buffer.get(out)
        return out
    }
}

/** `use` for AutoCloseable without kotlin-stdlib-jdk7 (the Kotlin 1.3 JVM check compiles this file too). */
internal inline fun <T : AutoCloseable, R> T.closing(block: (T) -> R): R {
    try {
        return block(this)
    } finally {
        close()
    }
}
