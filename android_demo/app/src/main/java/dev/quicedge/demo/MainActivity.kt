package dev.quicedge.demo

import android.app.Activity
import android.os.Bundle as AndroidBundle
import android.widget.Button
import android.widget.ProgressBar
import android.widget.TextView
import java.io.File
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * One screen: Train, Evaluate, Export delta, a progress bar and a status text. The bundle comes from the
 * app's assets (assets/bundle/, see README.md), the person's labelled texts from assets/train.csv and
 * assets/eval.csv. All work runs on one background thread; the UI only shows its progress.
 */
class MainActivity : Activity() {
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()
    private var trainer: Trainer? = null
    private lateinit var status: TextView
    private lateinit var progress: ProgressBar
    private lateinit var buttons: List<Button>

    override fun onCreate(savedInstanceState: AndroidBundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        status = findViewById(R.id.status)
        progress = findViewById(R.id.progress)
        val trainButton = findViewById<Button>(R.id.train)
        val evaluateButton = findViewById<Button>(R.id.evaluate)
        val exportButton = findViewById<Button>(R.id.export_delta)
        buttons = listOf(trainButton, evaluateButton, exportButton)
        trainButton.setOnClickListener { inBackground(getString(R.string.training)) { train() } }
        evaluateButton.setOnClickListener { inBackground(getString(R.string.evaluating)) { evaluate() } }
        exportButton.setOnClickListener { inBackground(getString(R.string.exporting)) { export() } }
        trainButton.setOnLongClickListener {  // after a CheckpointError: start over, keeping the unusable checkpoints aside
            inBackground(getString(R.string.loading)) {
                trainer?.close()
                trainer = null
                "started over: ${resumedText(open(startOver = true))}"
            }
            true
        }
        inBackground(getString(R.string.loading)) {
            val t = open()
            "${t.bundle.model} bundle, labels ${t.bundle.labels}, ${resumedText(t)}"
        }
    }

    override fun onDestroy() {
        worker.execute { trainer?.close() }
        worker.shutdown()
        super.onDestroy()
    }

    /** Run `task` on the worker thread with the buttons disabled; show its result or its error. */
    private fun inBackground(what: String, task: () -> String) {
        buttons.forEach { it.isEnabled = false }
        status.text = what
        worker.execute {
            val message = try {
                task()
            } catch (err: CheckpointError) {  // progress would be lost: say so, and how to start over on purpose
                getString(R.string.failed, "${err.message} (long-press Train to start over)")
            } catch (err: Exception) {  // a bad bundle, bad data or an ONNX Runtime error: say it, keep the app alive
                getString(R.string.failed, err.message ?: err.javaClass.simpleName)
            }
            runOnUiThread {
                status.text = message
                buttons.forEach { it.isEnabled = true }
            }
        }
    }

    private fun open(startOver: Boolean = false): Trainer {
        trainer?.let { return it }
        val bundle = try {
            Bundle.open(BundleInstaller.install(this))
        } catch (err: BundleError) {  // an installed copy damaged since: copy it from the assets again, verify again
            Bundle.open(BundleInstaller.install(this, force = true))
        }
        return Trainer(bundle, File(filesDir, "work"), startOver = startOver).also { trainer = it }
    }

    private fun resumedText(t: Trainer): String {
        val r = t.resumed
        val start = if (r.folder == null) "starting from the bundle" else "resumed at step ${r.step}"
        return if (r.skipped.isEmpty()) start else "$start (skipped ${r.skipped})"
    }

    private fun examples(asset: String, t: Trainer): List<Example> {
        val text = assets.open(asset).bufferedReader(Charsets.UTF_8).use { it.readText() }
        return TrainingData.readCsv(text, t.bundle.labels, asset)
    }

    private fun train(): String {
        val t = open()
        val examples = examples(TRAIN_CSV, t)
        val report = t.fit(examples, epochs = 3, checkpointEvery = 10) { p ->
            runOnUiThread {
                progress.max = p.total
                progress.progress = p.done
                status.text = getString(R.string.step_loss, p.done, p.total, p.step, p.loss)
            }
        }
        val first = report.losses.firstOrNull() ?: Float.NaN
        val last = report.losses.lastOrNull() ?: Float.NaN
        return getString(R.string.trained, report.steps, first, last, report.seconds, t.step)
    }

    private fun evaluate(): String {
        val t = open()
        val name = if (assets.list("")?.contains(EVAL_CSV) == true) EVAL_CSV else TRAIN_CSV
        val examples = examples(name, t)
        return getString(R.string.accuracy, 100.0 * t.evaluate(examples), examples.size, name)
    }

    private fun export(): String {
        val t = open()
        val folder = getExternalFilesDir(null) ?: filesDir
        val delta = t.exportDelta(File(folder, "personal-delta.safetensors"))
        return getString(R.string.exported, delta.path, delta.length())
    }

    companion object {
        const val TRAIN_CSV = "train.csv"
        const val EVAL_CSV = "eval.csv"
    }
}
