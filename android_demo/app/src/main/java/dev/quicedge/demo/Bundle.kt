package dev.quicedge.demo

import dev.quicedge.demo.BundleFields as F
import java.io.File
import java.io.FileInputStream
import java.security.KeyFactory
import java.security.MessageDigest
import java.security.PublicKey
import java.security.Signature
import java.security.spec.X509EncodedKeySpec
import java.util.Base64

/** A bundle that must not be loaded; the message says what is wrong and what to do. */
class BundleError(message: String) : IllegalArgumentException(message)

/** A batch the bundle cannot train on (shapes or values); nothing was trained. */
class BatchError(message: String) : IllegalArgumentException(message)

/** One tensor of manifest["inputs"] or manifest["target"]; `range` holds the valid values of an integer input. */
class TensorSpec(val name: String, val shape: List<Long>, val dtype: String, val range: LongRange?)

/**
 * A verified ONNX Runtime training bundle, as quic_edge/formats/bundle.py writes it: manifest.sha256 holds the sha256
 * of manifest.json's bytes, the manifest the sha256 of every other file; [open] checks the root first, then the
 * fields the app uses, then every file (as verify_bundle does in Python), and optionally a pinned digest and an
 * Ed25519 signature by a trusted key.
 */
class Bundle private constructor(val dir: File, val manifest: Map<String, Any?>) {
    private val where = "${dir.name}/${F.MANIFEST}"

    val runtime: String = manifest.string(F.KEY_RUNTIME, where)
    val model: String = manifest[F.KEY_MODEL] as? String ?: ""
    val adapter: String = manifest.string(F.KEY_ADAPTER, where)
    val baseFingerprint: String = manifest.string(F.KEY_BASE_FINGERPRINT, where)
    val config: Any? = manifest.field(F.KEY_CONFIG, where)
    val baseDtype: String = manifest.string(F.KEY_BASE_DTYPE, where)
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
    /**
     * Each trainable tensor's stored scale: a tensor in a learning-rate group is stored divided by it in the ONNX
     * Runtime checkpoint, so ORT's one optimizer moves it at its group's rate (export/ort_graph.py). lr_scale for
     * AdamW, its square root for SGD, 1 outside every group.
     */
    val storedScales: Map<String, Float> = run {
        val scales = trainable.keys.associateWith { 1.0f }.toMutableMap()
        val groups = manifest.obj(F.KEY_OPTIMIZER, where)[F.OPT_GROUPS] as? List<*> ?: emptyList<Any?>()
        for (group in groups) {
            @Suppress("UNCHECKED_CAST")
            val g = group as? Map<String, Any?> ?: throw BundleError("$where: optimizer groups must be objects")
            val lrScale = g.number(F.OPT_LR_SCALE, "$where optimizer group")
            if (!(lrScale > 0.0) || lrScale.isInfinite()) throw BundleError("$where: a group's lr_scale must be > 0")
            val scale = (if (optimizerName == "adamw") lrScale else Math.sqrt(lrScale)).toFloat()
            for (name in g.list(F.OPT_PARAMS, "$where optimizer group")) {
                if (name !is String || !scales.containsKey(name)) throw BundleError("$where: a group names $name, not trainable")
                scales[name] = scale
            }
        }
        scales
    }

    /** The tensors as they are (what a delta holds) from the values an ONNX Runtime checkpoint stores. */
    fun fromStored(tensors: Map<String, FloatTensor>): Map<String, FloatTensor> = tensors.mapValues { (name, t) ->
        val scale = storedScales[name] ?: 1.0f
        if (scale == 1.0f) t else FloatTensor(t.shape, FloatArray(t.data.size) { t.data[it] * scale })
    }

    val batchSize: Int get() = inputs[0].shape[0].toInt()
    val seqLen: Int get() = inputs[0].shape[1].toInt()

    /** The identity strings a checkpoint and a delta of this bundle carry (quic_edge/formats/identity.py). */
    val identity: Map<String, String> get() = linkedMapOf(
        F.KEY_ADAPTER to adapter, F.KEY_BASE_FINGERPRINT to baseFingerprint,
        F.KEY_CONFIG to Json.canonical(config), F.KEY_BASE_DTYPE to baseDtype
    )

    /**
     * The checks at the door, as DeviceLoop.check_batch: shapes as the manifest declares, every id within its input's
     * range (token ids within the vocabulary, label ids within the label set). Out-of-range ids would make ONNX
     * Runtime read past its tables.
     */
    fun checkBatch(inputIds: Array<LongArray>, attentionMask: Array<LongArray>, labels: LongArray) {
        val rows = listOf(inputs[0] to inputIds, inputs[1] to attentionMask)
        for ((spec, array) in rows) {
            if (array.size.toLong() != spec.shape[0] || array.any { it.size.toLong() != spec.shape[1] }) {
                throw BatchError("input ${spec.name}: the bundle expects shape ${spec.shape}")
            }
            for (row in array) checkRange(spec, row)
        }
        if (labels.size.toLong() != target.shape[0]) throw BatchError("input ${target.name}: the bundle expects shape ${target.shape}")
        checkRange(target, labels)
    }

    private fun checkRange(spec: TensorSpec, values: LongArray) {
        val range = spec.range ?: return
        for (v in values) {
            if (v !in range) throw BatchError("input ${spec.name}: values must be in ${range.first}..${range.last}, got $v")
        }
    }

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
        if (target.range != LongRange(0, labels.size - 1L)) {
            throw BundleError("$where: the target's range must be 0..${labels.size - 1} (one id per label), got ${target.range}")
        }
        if (inputs[1].range != LongRange(0, 1)) throw BundleError("$where: the attention mask's range must be 0..1")
        if (inputs[0].range == null) throw BundleError("$where: the input ids need a range (the vocabulary); re-export")
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
        val bounds = map[F.SPEC_RANGE]?.let { longList(it, "$w range") }
        if (bounds != null && (bounds.size != 2 || bounds[0] > bounds[1])) throw BundleError("$w: range must be [low, high]")
        val range = bounds?.let { LongRange(it[0], it[1]) }
        return TensorSpec(map.string(F.SPEC_NAME, w), longList(map.field(F.SPEC_SHAPE, w), w), map.string(F.SPEC_DTYPE, w), range)
    }

    private fun longList(value: Any?, w: String): List<Long> {
        val list = value as? List<*> ?: throw BundleError("$w: a shape must be a list of integers")
        return list.map { it as? Long ?: throw BundleError("$w: a shape must be a list of integers") }
    }

    companion object {
        /** The bundle's root digest: the sha256 of manifest.json, checked against manifest.sha256. */
        fun digest(dir: File): String {
            val path = File(dir, F.MANIFEST)
            if (!path.isFile) {
                throw BundleError("$dir is not a bundle: ${F.MANIFEST} is missing; export one with `quic-edge export`")
            }
            val digest = sha256Hex(path)
            val root = File(dir, F.ROOT_DIGEST)
            if (!root.isFile) {
                throw BundleError("$dir: ${F.ROOT_DIGEST} is missing, so the manifest cannot be verified; copy the whole " +
                    "bundle again (or re-export it with this quic-edge)")
            }
            if (root.readText(Charsets.US_ASCII).trim() != digest) {
                throw BundleError("$path was altered after export (its sha256 is not the one in ${F.ROOT_DIGEST}); copy the " +
                    "bundle again from its publisher")
            }
            return digest
        }

        /**
         * Read manifest.json after its root digest (and, when given, the pinned digest and a signature by one of the
         * trusted Ed25519 keys) checked: format and version checked, files not yet verified.
         */
        fun readManifest(dir: File, expectedDigest: String? = null, trustedKeys: List<PublicKey>? = null): Map<String, Any?> {
            val digest = digest(dir)
            if (expectedDigest != null && digest != expectedDigest.trim().toLowerCase()) {
                throw BundleError("$dir is not the bundle this app expects (digest ${digest.take(16)}..., expected " +
                    "${expectedDigest.take(16)}...); install the bundle its publisher released")
            }
            if (trustedKeys != null) verifySignature(dir, digest, trustedKeys)
            val path = File(dir, F.MANIFEST)
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
                    "$path has bundle format $version; this app reads format ${F.FORMAT_VERSION}: " +
                        "update the app (or export the bundle with the quic-edge version the app was built for)"
                )
            }
            if (version < F.FORMAT_VERSION) {
                throw BundleError("$path has bundle format $version, without a root digest or identity; re-export the bundle")
            }
            return manifest
        }

        /** A trusted public key from its PEM text (SubjectPublicKeyInfo, as `quic-edge keygen` writes it). */
        fun publicKey(pem: String): PublicKey {
            val body = pem.lines().filter { !it.startsWith("-----") }.joinToString("").trim()
            return try {
                KeyFactory.getInstance("Ed25519").generatePublic(X509EncodedKeySpec(Base64.getDecoder().decode(body)))
            } catch (err: Exception) {
                throw BundleError("trusted key: not an Ed25519 public key in PEM (${err.message})")
            }
        }

        private fun verifySignature(dir: File, digest: String, trustedKeys: List<PublicKey>) {
            if (trustedKeys.isEmpty()) throw BundleError("no trusted keys given: give the publisher's public key")
            val file = File(dir, F.SIGNATURE)
            if (!file.isFile) {
                throw BundleError("$dir is not signed (${F.SIGNATURE} is missing) and this app trains only signed bundles; " +
                    "ask the publisher for a signed bundle (quic-edge export --sign KEY)")
            }
            val signature = file.readBytes()
            for (key in trustedKeys) {
                val verifier = Signature.getInstance("Ed25519")
                verifier.initVerify(key)
                verifier.update(digest.toByteArray(Charsets.US_ASCII))
                val valid = try {
                    signature.size == 64 && verifier.verify(signature)
                } catch (err: java.security.SignatureException) {  // bytes that are no signature at all ("Invalid point")
                    false
                }
                if (valid) return
            }
            throw BundleError("$dir is signed by none of the trusted keys (or was altered after signing); install a " +
                "bundle from the publisher whose key this app trusts")
        }

        /** Read the manifest, check every file's sha256 and the fields the app uses; throws BundleError. */
        fun open(
            dir: File, runtime: String = F.RUNTIME_ORT, expectedDigest: String? = null, trustedKeys: List<PublicKey>? = null
        ): Bundle {
            val manifest = readManifest(dir, expectedDigest, trustedKeys)
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
