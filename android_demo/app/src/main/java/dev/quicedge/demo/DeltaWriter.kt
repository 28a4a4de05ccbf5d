package dev.quicedge.demo

import dev.quicedge.demo.BundleFields as F
import java.io.ByteArrayOutputStream
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * The personal delta: the trained tensors in a safetensors file with the metadata quic_edge.load_delta
 * checks (quic_edge/formats/delta_file.py, format 2: the identity of the bundle). Format: 8-byte little-endian
 * header length, JSON header (tensor dtype, shape and data offsets, plus "__metadata__"), then the raw
 * little-endian float32 data.
 */
object DeltaWriter {
    /** The metadata of a delta trained on `bundle`, byte for byte as Python's DeviceLoop.export_delta writes it. */
    fun metadata(bundle: Bundle): Map<String, String> {
        val identity = bundle.identity
        return linkedMapOf(
            F.META_FORMAT to F.DELTA_FORMAT,
            F.META_FORMAT_VERSION to F.DELTA_FORMAT_VERSION,
            F.META_BASE_MODEL to bundle.model,
            F.META_ADAPTER to identity.getValue(F.KEY_ADAPTER),
            F.META_BASE_FINGERPRINT to identity.getValue(F.KEY_BASE_FINGERPRINT),
            F.META_CONFIG to identity.getValue(F.KEY_CONFIG),  // canonical_config: sorted, compact JSON
            F.META_BASE_DTYPE to identity.getValue(F.KEY_BASE_DTYPE)
        )
    }

    /** Check the tensors against the bundle's trainable tensors and write the delta atomically. */
    fun write(file: File, tensors: Map<String, FloatTensor>, bundle: Bundle): File {
        val expected = bundle.trainable
        if (tensors.keys != expected.keys) {
            val missing = expected.keys - tensors.keys
            val extra = tensors.keys - expected.keys
            throw IllegalArgumentException("the tensors do not match this bundle (missing ${missing.take(3)}, unexpected ${extra.take(3)})")
        }
        for ((name, tensor) in tensors) {
            if (tensor.shape != expected[name]) {
                throw IllegalArgumentException("$name: shape ${tensor.shape}, the bundle has ${expected[name]}")
            }
            if (tensor.data.any { it.isNaN() || it.isInfinite() }) throw IllegalArgumentException("$name: holds NaN or infinite values")
        }
        return Atomic.writeBytes(file, encode(tensors, metadata(bundle)))
    }

    /** The bytes of a safetensors file holding `tensors` (float32) and string `metadata`. */
    fun encode(tensors: Map<String, FloatTensor>, metadata: Map<String, String>): ByteArray {
        val names = tensors.keys.sorted()
        val header = LinkedHashMap<String, Any?>()
        header["__metadata__"] = metadata
        var offset = 0L
        for (name in names) {
            val tensor = tensors.getValue(name)
            val size = 4L * tensor.data.size
            header[name] = linkedMapOf("dtype" to "F32", "shape" to tensor.shape, "data_offsets" to listOf(offset, offset + size))
            offset += size
        }
        var headerBytes = Json.dumps(header).toByteArray(Charsets.UTF_8)
        val padding = (8 - headerBytes.size % 8) % 8  // the data starts 8-byte aligned, as the safetensors writer does
        headerBytes += ByteArray(padding) { 0x20.toByte() }
        val out = ByteArrayOutputStream(8 + headerBytes.size + offset.toInt())
        out.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(headerBytes.size.toLong()).array())
        out.write(headerBytes)
        for (name in names) {
            val data = tensors.getValue(name).data
            val bytes = ByteBuffer.allocate(4 * data.size).order(ByteOrder.LITTLE_ENDIAN)
            bytes.asFloatBuffer().put(data)
            out.write(bytes.array())
        }
        return out.toByteArray()
    }
}
