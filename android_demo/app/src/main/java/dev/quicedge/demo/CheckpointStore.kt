package dev.quicedge.demo

import dev.quicedge.demo.BundleFields as F
import java.io.File

/** The checkpoint training resumed from (null: none, start from the bundle) and those skipped, with why. */
class Resumed(val folder: File?, val step: Long, val skipped: List<String>)

/** Checkpoints exist but none can be resumed: starting again would lose the person's progress without a word. */
class CheckpointError(message: String) : IllegalStateException(message)

/**
 * Checkpoint folders exactly as runtimes/loop.py keeps them, so the app and the Python device loop can
 * resume from each other's checkpoints: `checkpoints/ckpt-00000012/` holding the runtime's files and
 * state.json ({"step", "runtime", "sha256" of every file, and the bundle's identity}, as
 * quic_edge/formats/checkpoint.py writes it).
 *
 * A checkpoint is written into a temporary folder, fsynced and renamed into place, so a kill at any
 * moment leaves the previous checkpoints intact; the newest [keep] are kept. Resuming takes the newest
 * folder that verifies: a torn or corrupt one is skipped (and left for a look) and the previous one used.
 * When checkpoints exist and none verifies, [resume] refuses (CheckpointError) unless asked to start over,
 * which moves them to checkpoints/unusable-* (kept, never deleted).
 */
class CheckpointStore(
    workDir: File,
    private val runtime: String,
    private val identity: Map<String, String>,
    keep: Int = 2
) {
    val dir = File(workDir, F.CHECKPOINT_DIR)
    private val keep = Math.max(1, keep)

    /** Save step `step`: `writeState(folder)` writes the runtime's files into a fresh temporary folder. */
    fun save(step: Long, writeState: (File) -> Unit): File {
        if (!dir.isDirectory && !dir.mkdirs()) throw java.io.IOException("cannot create $dir")
        val final = File(dir, F.CHECKPOINT_PREFIX + String.format(java.util.Locale.ROOT, "%08d", step))
        val tmp = File(dir, ".tmp-${final.name}-${Atomic.randomToken()}")
        tmp.mkdirs()
        try {
            writeState(tmp)
            val sums = LinkedHashMap<String, Any?>()
            for (file in (tmp.listFiles() ?: emptyArray()).filter { it.isFile }.sortedBy { it.name }) {
                sums[file.name] = sha256Hex(file)
                Atomic.fsyncFile(file)
            }
            val state = linkedMapOf<String, Any?>("step" to step, "runtime" to runtime, "sha256" to sums)
            state.putAll(identity)
            Atomic.writeBytes(File(tmp, F.CHECKPOINT_STATE), Json.dumps(state, sortKeys = true).toByteArray(Charsets.UTF_8))
            if (final.exists()) discard(final)
            Atomic.rename(tmp, final)
        } catch (err: Throwable) {
            Atomic.deleteTree(tmp)
            throw err
        }
        Atomic.fsyncDir(dir)
        prune()
        return final
    }

    /** Complete checkpoint folders, newest first (leftover temporary folders are not checkpoints). */
    fun checkpoints(): List<File> =
        (dir.listFiles() ?: emptyArray())
            .filter { it.isDirectory && it.name.startsWith(F.CHECKPOINT_PREFIX) }
            .sortedByDescending { it.name }

    /**
     * Load the newest checkpoint that verifies with `load(folder)`. With no checkpoint at all: folder null, step 0.
     * With checkpoints none of which verifies: CheckpointError naming the folder, unless `startOver`, which moves them
     * aside and starts from the bundle.
     */
    fun resume(startOver: Boolean = false, load: (File) -> Unit): Resumed {
        val skipped = ArrayList<String>()
        val found = checkpoints()
        for (folder in found) {
            try {
                val step = verify(folder)
                load(folder)
                return Resumed(folder, step, skipped)
            } catch (err: Exception) {  // corrupt JSON, a wrong sha256, another bundle, or the runtime refusing the files
                skipped.add("${folder.name}: ${err.message}")
            }
        }
        if (found.isNotEmpty() && !startOver) {
            throw CheckpointError("no checkpoint in $dir can be resumed (${skipped.joinToString("; ")}); nothing was " +
                "changed. To start over from the bundle (the unusable checkpoints are kept aside), choose Start over")
        }
        if (found.isNotEmpty()) {
            val aside = File(dir, "unusable-" + System.currentTimeMillis())
            if (!aside.mkdirs()) throw java.io.IOException("cannot create $aside")
            for (folder in found) Atomic.rename(folder, File(aside, folder.name))
            Atomic.fsyncDir(dir)
        }
        return Resumed(null, 0L, skipped)
    }

    /** The step of a checkpoint folder whose state.json and files check out; throws otherwise. */
    fun verify(folder: File): Long {
        val stateFile = File(folder, F.CHECKPOINT_STATE)
        if (!stateFile.isFile) throw IllegalStateException("${F.CHECKPOINT_STATE} is missing (a torn checkpoint)")
        @Suppress("UNCHECKED_CAST")
        val state = Json.parse(stateFile.readText(Charsets.UTF_8)) as? Map<String, Any?>
            ?: throw IllegalStateException("${F.CHECKPOINT_STATE} is not an object")
        if (state["runtime"] != runtime) throw IllegalStateException("it is a ${state["runtime"]} checkpoint")
        for ((key, value) in identity) {
            if (state[key] != value) throw IllegalStateException("it belongs to another bundle (its $key differs)")
        }
        @Suppress("UNCHECKED_CAST")
        val sums = state["sha256"] as? Map<String, Any?> ?: throw IllegalStateException("no sha256 in ${F.CHECKPOINT_STATE}")
        if (sums.isEmpty()) throw IllegalStateException("no files listed in ${F.CHECKPOINT_STATE}")
        for ((name, expected) in sums) {
            val file = File(folder, name)
            if (name.contains('/') || name.contains('\\') || name == ".." || name == F.CHECKPOINT_STATE || !file.isFile) {
                throw IllegalStateException("$name is missing")
            }
            if (sha256Hex(file) != expected) throw IllegalStateException("$name does not match its sha256")
        }
        val step = state["step"] as? Long ?: throw IllegalStateException("no step in ${F.CHECKPOINT_STATE}")
        if (step < 0) throw IllegalStateException("a negative step in ${F.CHECKPOINT_STATE}")
        return step
    }

    private fun prune() {
        for (old in checkpoints().drop(keep)) discard(old)
        for (leftover in dir.listFiles() ?: emptyArray()) {
            // temporary folders of a killed save, trash of a killed delete: this store is their only writer
            if (leftover.name.startsWith(".tmp-") || leftover.name.startsWith(".trash-")) Atomic.deleteTree(leftover)
        }
    }

    /** Delete a checkpoint: renamed away first (atomic), so a kill mid-delete never leaves a torn ckpt-*. */
    private fun discard(folder: File) {
        val trash = File(dir, ".trash-${folder.name}-${Atomic.randomToken()}")
        Atomic.rename(folder, trash)
        Atomic.deleteTree(trash)
    }
}
