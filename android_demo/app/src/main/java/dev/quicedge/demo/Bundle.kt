package dev.quicedge.demo

import dev.quicedge.demo.BundleFields as F
import java.io.File
import java.io.FileInputStream
import java.security.MessageDigest

/** A bundle that must not be loaded; the message says what is wrong and what to do. */
class BundleError(message: String) : IllegalArgumentException(message)

/** One tensor of manifest["inputs"] or manifest["target"]. */
class TensorSpec(val name: String, val shape: List<Long>, val dtype: String)

/**
 * A verified ONNX Runtime training bundle, as export/bundle.py writes it: manifest.json with the sha256 of
 * every file, which [open] checks before anything is used (as verify_bundle does in Python).
 */
class Bundle private constructor(val dir: File, val manifest: Map<String, Any?>) {
    private val where = "${dir.name}/${F.MANIFEST}"

    val runtime: String = manifest.string(F.KEY_RUNTIME, where)
    val model: String = manifest[F.KEY_MODEL] as? String ?: ""
    val baseFingerprint: String = manifest.string(F.KEY_BASE_FINGERPRINT, where)
    val config: Any? = manifest.field(F.KEY_CONFIG, where)
    val quantize: Any? = manifest.field(F.KEY_QUANTIZE, where)
    val labels: List<String> = manifest.list(F.KEY_LABELS, where).map {
        it as? String ?: throw BundleError("$where: labels must be strings")
    }
    val inputs: List<TensorSpec> = manifest.list(F.KEY_INPUTS, where).map { spec(it, "input") }
    val target: TensorSpec = spec(manifest.field(F.KEY_TARGET, where), "target")
    val optimizerName: String = manifest.obj(F.KEY_OPTIMIZER, where).string(F.OPT_NAME, "$where optimizer")
    val learningRate: Double = manifest.obj(F.KEY_OPTIMIZER, where).number(F.OPT_LR, "$where optimizer")
    /** Trainable tensor name -> shape, in manifest order (the names a delta uses). */
    val trainable: Map<String, List<Long>> = manifest.obj(F.KEY_TRAINABLE, where).mapValues { (name, shape) ->
        longList(shape, "$where trainable $name")
    }
    val batchSize: Int get() = inputs[0].shape[0].toInt()
    val seqLen: Int get() = inputs[0].shape[1].toInt()

    init {
        val names = inputs.map { it.name }
        if (names != listOf(F.INPUT_IDS, F.INPUT_ATTENTION_MASK)) {
            throw BundleError("$where: this app feeds ${F.INPUT_IDS} and ${F.INPUT_ATTENTION_MASK}, the bundle wants $names")
        }
        for (s in inputs) {
            if (s.dtype != F.DTYPE_INT64 || s.shape.size != 2 || s.shape != inputs[0].shape) {
                throw BundleError("$where: input ${s.name} must be ${F.DTYPE_INT64} [batch, seq], got ${s.dtype} ${s.shape}")
            }
        }
        if (target.name != F.TARGET_LABELS || target.dtype != F.DTYPE_INT64 || target.shape != listOf(inputs[0].shape[0])) {
            throw BundleError("$where: the target must be ${F.TARGET_LABELS} ${F.DTYPE_INT64} [batch], got ${target.name} ${target.dtype} ${target.shape}")
        }
        if (labels.isEmpty()) throw BundleError("$where: a text classification bundle needs label names")
    }

    /** The file that plays `role` (BundleFields.ROLE_*). */
    fun file(role: String): File {
        val files = manifest.obj(F.KEY_FILES, where)
        val rel = files[role] as? String ?: throw BundleError("this $runtime bundle has no $role file; re-export it")
        return safePath(dir, rel)
    }

    private fun spec(value: Any?, what: String): TensorSpec {
        @Suppress("UNCHECKED_CAST")
        val map = value as? Map<String, Any?> ?: throw BundleError("$where: each $what spec must be an object")
        val w = "$where $what"
        return TensorSpec(map.string(F.SPEC_NAME, w), longList(map.field(F.SPEC_SHAPE, w), w), map.string(F.SPEC_DTYPE, w))
    }

    private fun longList(value: Any?, w: String): List<Long> {
        val list = value as? List<*> ?: throw BundleError("$w: a shape must be a list of integers")
        return list.map { it as? Long ?: throw BundleError("$w: a shape must be a list of integers") }
    }

    companion object {
        /** Read manifest.json: format and version checked, files not yet verified. */
        fun readManifest(dir: File): Map<String, Any?> {
            val path = File(dir, F.MANIFEST)
            if (!path.isFile) {
                throw BundleError("$dir is not a bundle: ${F.MANIFEST} is missing; export one with `quic-edge export`")
            }
            val parsed = try {
                Json.parse(path.readText(Charsets.UTF_8))
            } catch (err: JsonError) {
                throw BundleError("$path is not valid JSON (${err.message}); re-export the bundle")
            }
            @Suppress("UNCHECKED_CAST")
            val manifest = parsed as? Map<String, Any?>
            if (manifest == null || manifest[F.KEY_FORMAT] != F.FORMAT) {
                throw BundleError("$path is not a quic-edge bundle manifest")
            }
            val version = manifest[F.KEY_FORMAT_VERSION]
            if (version !is Long || version > F.FORMAT_VERSION) {
                throw BundleError(
                    "$path has bundle format $version; this app reads format ${F.FORMAT_VERSION} and older: " +
                        "update the app (or export the bundle with the quic-edge version the app was built for)"
                )
            }
            return manifest
        }

        /** Read the manifest, check every file's sha256 and the fields the app uses; throws BundleError. */
        fun open(dir: File, runtime: String = F.RUNTIME_ORT): Bundle {
            val manifest = readManifest(dir)
            val where = "${dir.name}/${F.MANIFEST}"
            val files = manifest.obj(F.KEY_FILES, where)
            val sums = manifest.obj(F.KEY_SHA256, where)
            for ((role, rel) in files) {
                if (rel !is String || !sums.containsKey(rel)) {
                    throw BundleError("bundle manifest lists $role = $rel without a sha256; re-export the bundle")
                }
            }
            for ((rel, expected) in sums) {
                val path = safePath(dir, rel)
                if (!path.isFile) throw BundleError("bundle file $rel is missing from $dir; copy the whole bundle again")
                if (sha256Hex(path) != expected) {
                    throw BundleError("bundle file $rel is altered or corrupt (sha256 mismatch); copy the bundle again")
                }
            }
            val bundle = Bundle(dir, manifest)
            if (bundle.runtime != runtime) {
                throw BundleError("$dir is a ${bundle.runtime} bundle; this app trains $runtime bundles")
            }
            val labelsFile = Json.parse(bundle.file(F.ROLE_LABELS).readText(Charsets.UTF_8))
            if (labelsFile != bundle.labels) {
                throw BundleError("$dir: ${F.ROLE_LABELS} file and manifest disagree ($labelsFile vs ${bundle.labels}); re-export")
            }
            return bundle
        }
    }
}

/** `root/relative`, refusing absolute paths, '..', backslashes and links that lead outside (as safe_path). */
fun safePath(root: File, relative: String): File {
    val parts = relative.split('/').filter { it.isNotEmpty() && it != "." }
    if (relative.length == 0 || relative.startsWith("/") || parts.contains("..") || relative.contains('\\')) {
        throw BundleError("bundle file path '$relative' escapes the bundle directory; re-export the bundle")
    }
    val base = root.canonicalFile
    val full = File(base, parts.joinToString(File.separator)).canonicalFile
    var parent: File? = full
    while (parent != null && parent != base) parent = parent.parentFile
    if (parent == null) {
        throw BundleError("bundle file path '$relative' resolves outside the bundle ($full); re-export the bundle")
    }
    return full
}

private val HEX = "0123456789abcdef".toCharArray()

fun sha256Hex(file: File): String {
    val digest = MessageDigest.getInstance("SHA-256")
    FileInputStream(file).use { input ->
        val buffer = ByteArray(1 shl 20)
        while (true) {
            val n = input.read(buffer)
            if (n < 0) break
            digest.update(buffer, 0, n)
        }
    }
    val out = StringBuilder(64)
    for (b in digest.digest()) {
        val v = b.toInt() and 0xFF
        out.append(HEX[v ushr 4]).append(HEX[v and 0x0F])
    }
    return out.toString()
}
